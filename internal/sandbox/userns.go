package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
)

// setUserNS starts boot in a new user namespace when the mode asks for one.
// Maps this process may write go through the kernel's own wait (boot
// executes only once they exist); maps that need newuidmap/newgidmap are
// written after the fork, and boot waits for them on --sync-userns-fd and
// re-executes itself. It returns both ends of that pipe, if any; the
// parent closes the read end once boot started.
func setUserNS(cmd *exec.Cmd, m *rootless.Mode, d *procutil.Donations, exe *os.File) (w, r *os.File, err error) {
	if m == nil || !m.NewUserNS {
		return nil, nil, nil
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
	if os.Geteuid() == 0 {
		// The kernel does not execute a file whose owner has no id in the
		// caller's user namespace: give the sealed copy to the
		// namespace's root.
		if err := unix.Fchown(int(exe.Fd()), int(hostID(m.UIDMap, 0)), int(hostID(m.GIDMap, 0))); err != nil {
			return nil, nil, fmt.Errorf("hand the executable copy to the user namespace: %w", err)
		}
	}
	if !m.Helper {
		for _, mp := range m.UIDMap {
			cmd.SysProcAttr.UidMappings = append(cmd.SysProcAttr.UidMappings,
				syscall.SysProcIDMap{ContainerID: int(mp.ContainerID), HostID: int(mp.HostID), Size: int(mp.Size)})
		}
		for _, mp := range m.GIDMap {
			cmd.SysProcAttr.GidMappings = append(cmd.SysProcAttr.GidMappings,
				syscall.SysProcIDMap{ContainerID: int(mp.ContainerID), HostID: int(mp.HostID), Size: int(mp.Size)})
		}
		// An unprivileged user may write a gid map only with setgroups
		// denied.
		setgroups := os.Geteuid() == 0 && !rootless.InUserNS()
		cmd.SysProcAttr.GidMappingsEnableSetgroups = setgroups
		// Become the namespace's root before executing: a caller whose own
		// id is not in the map (root creating a spec's user namespace)
		// would otherwise be nobody there, without capabilities. The
		// caller's supplementary groups are dropped where allowed.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: !setgroups}
		return nil, nil, nil
	}
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("sync-userns pipe: %w", err)
	}
	d.Donate("sync-userns-fd", r)
	return w, r, nil
}

// hostID is the host id that container id c maps to (the first mapping's
// start if none covers c).
func hostID(maps []specs.LinuxIDMapping, c uint32) uint32 {
	for _, mp := range maps {
		if c >= mp.ContainerID && c-mp.ContainerID < mp.Size {
			return mp.HostID + c - mp.ContainerID
		}
	}
	if len(maps) > 0 {
		return maps[0].HostID
	}
	return 0
}

// writeMaps runs the setuid helpers for boot's namespace and releases boot.
func writeMaps(m *rootless.Mode, pid int, sync *os.File) error {
	defer sync.Close()
	if err := m.WriteMapsWithHelpers(pid); err != nil {
		return fmt.Errorf("user namespace maps: %w", err)
	}
	if _, err := sync.Write([]byte("1")); err != nil {
		return fmt.Errorf("release boot after writing maps: %w", err)
	}
	return nil
}
