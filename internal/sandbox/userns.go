package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
)

// setUserNS starts boot in a new user namespace when the mode asks for one.
// Maps this process may write go through the kernel's own wait (boot
// executes only once they exist); maps that need newuidmap/newgidmap are
// written after the fork, and boot waits for them on --sync-userns-fd and
// re-executes itself. It returns both ends of that pipe, if any; the
// parent closes the read end once boot started.
func setUserNS(cmd *exec.Cmd, m *rootless.Mode, d *procutil.Donations) (w, r *os.File, err error) {
	if m == nil || !m.NewUserNS {
		return nil, nil, nil
	}
	cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
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
		cmd.SysProcAttr.GidMappingsEnableSetgroups = os.Geteuid() == 0 && !rootless.InUserNS()
		return nil, nil, nil
	}
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("sync-userns pipe: %w", err)
	}
	d.Donate("sync-userns-fd", r)
	return w, r, nil
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
