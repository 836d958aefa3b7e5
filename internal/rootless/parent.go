// Package rootless lets moat run as an unprivileged user, the way
// RootlessKit's parent/child pair does. The parent side (this file, in the
// CLI) decides whether boot needs a user namespace of its own and writes its
// uid/gid maps, with newuidmap/newgidmap when /etc/subuid grants a range and
// directly for a single-ID map. The child side (child.go, in `moat boot`)
// waits for the maps and re-executes itself to gain its capabilities.
package rootless

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// ErrMapping marks a uid/gid mapping the caller may not use.
var ErrMapping = errors.New("id mapping not allowed")

// Mode is how moat runs with respect to user namespaces.
type Mode struct {
	// Rootless: moat has no real root. Cgroups are used only where
	// writable, and devices are bind-mounted instead of created.
	Rootless bool
	// InUserNS: moat itself already runs in a non-initial user namespace
	// (rootless Podman runs its runtime that way).
	InUserNS bool
	// NewUserNS: boot gets a user namespace of its own, with these maps
	// (host ids as this process sees them).
	NewUserNS      bool
	UIDMap, GIDMap []specs.LinuxIDMapping
	// Helper: the maps need newuidmap/newgidmap (a range beyond our own id);
	// else this process writes them.
	Helper bool
}

// Decide works out the mode for a container. setting is --rootless
// (true, false or auto); s may be nil (commands that create nothing).
func Decide(setting string, s *specs.Spec) (*Mode, error) {
	m := &Mode{InUserNS: InUserNS()}
	euid := os.Geteuid()
	switch setting {
	case "true":
		m.Rootless = true
	case "false":
		m.Rootless = false
	default:
		m.Rootless = euid != 0 || m.InUserNS
	}
	specNS := s != nil && s.Linux != nil && hasUserNS(s)
	switch {
	case specNS:
		m.NewUserNS = true
		m.UIDMap, m.GIDMap = s.Linux.UIDMappings, s.Linux.GIDMappings
	case euid != 0:
		// An unprivileged caller always gets a namespace; uid 0 inside an
		// existing one (rootless Podman: _CONTAINERS_USERNS_CONFIGURED)
		// uses the one it is in.
		m.NewUserNS = true
		m.UIDMap, m.GIDMap = DefaultMaps()
	}
	if m.NewUserNS && euid != 0 {
		if err := m.checkAllowed(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func hasUserNS(s *specs.Spec) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return true
		}
	}
	return false
}

// InUserNS reports whether this process runs in a user namespace other than
// the initial one (its uid map is not the identity over all ids).
func InUserNS() bool { return !procutil.InitialUserNS() }

// subRange is one /etc/subuid or /etc/subgid grant.
type subRange struct{ start, count uint32 }

// subRanges returns the caller's ranges in /etc/subuid or /etc/subgid.
func subRanges(file string, id int) []subRange {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	names := map[string]bool{strconv.Itoa(id): true}
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		names[u.Username] = true
	}
	var out []subRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(p) != 3 || !names[p[0]] {
			continue
		}
		start, err1 := strconv.ParseUint(p[1], 10, 32)
		count, err2 := strconv.ParseUint(p[2], 10, 32)
		if err1 == nil && err2 == nil && count > 0 {
			out = append(out, subRange{uint32(start), uint32(count)})
		}
	}
	return out
}

// DefaultMaps: container root is the caller; container ids 1..N are the
// caller's first subordinate range, when it has one (in /etc/subuid and
// /etc/subgid both); else a single-ID map.
func DefaultMaps() (uid, gid []specs.LinuxIDMapping) {
	uid = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}
	gid = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}
	us, gs := subRanges("/etc/subuid", os.Geteuid()), subRanges("/etc/subgid", os.Getegid())
	if len(us) > 0 && len(gs) > 0 {
		uid = append(uid, specs.LinuxIDMapping{ContainerID: 1, HostID: us[0].start, Size: us[0].count})
		gid = append(gid, specs.LinuxIDMapping{ContainerID: 1, HostID: gs[0].start, Size: gs[0].count})
	}
	return uid, gid
}

// checkAllowed verifies that an unprivileged caller may write the maps, and
// whether it needs the setuid helpers for them.
func (m *Mode) checkAllowed() error {
	for _, k := range []struct {
		name string
		maps []specs.LinuxIDMapping
		own  uint32
		file string
	}{
		{"uid", m.UIDMap, uint32(os.Geteuid()), "/etc/subuid"},
		{"gid", m.GIDMap, uint32(os.Getegid()), "/etc/subgid"},
	} {
		if len(k.maps) == 0 {
			return fmt.Errorf("%w: no %s mapping for the user namespace", ErrMapping, k.name)
		}
		ranges := subRanges(k.file, int(k.own))
		for _, mp := range k.maps {
			if mp.Size == 1 && mp.HostID == k.own {
				continue
			}
			if !within(mp, ranges) {
				return fmt.Errorf("%w: %s mapping %d-%d -> host %d-%d is neither your own %s %d nor inside your ranges in %s",
					ErrMapping, k.name, mp.ContainerID, uint64(mp.ContainerID)+uint64(mp.Size)-1,
					mp.HostID, uint64(mp.HostID)+uint64(mp.Size)-1, k.name, k.own, k.file)
			}
			m.Helper = true
		}
	}
	if m.Helper {
		for _, h := range []string{"newuidmap", "newgidmap"} {
			if _, err := exec.LookPath(h); err != nil {
				return fmt.Errorf("%w: the mapping needs %s (install the uidmap package): %v", ErrMapping, h, err)
			}
		}
	}
	return nil
}

func within(mp specs.LinuxIDMapping, ranges []subRange) bool {
	lo, hi := uint64(mp.HostID), uint64(mp.HostID)+uint64(mp.Size)
	for _, r := range ranges {
		if lo >= uint64(r.start) && hi <= uint64(r.start)+uint64(r.count) {
			return true
		}
	}
	return false
}

// helperTimeout bounds newuidmap/newgidmap.
const helperTimeout = 10 * time.Second

// WriteMapsWithHelpers runs newuidmap and newgidmap for pid, side by side
// (the two maps are independent files; each helper is a process start on
// rootless create's critical path).
// Precondition: pid sits in its new user namespace waiting for the maps.
func (m *Mode) WriteMapsWithHelpers(pid int) error {
	helpers := []struct {
		tool string
		maps []specs.LinuxIDMapping
	}{{"newuidmap", m.UIDMap}, {"newgidmap", m.GIDMap}}
	done := make(chan error, len(helpers))
	var cmds []*exec.Cmd
	for _, h := range helpers {
		args := []string{strconv.Itoa(pid)}
		for _, mp := range h.maps {
			args = append(args, strconv.FormatUint(uint64(mp.ContainerID), 10),
				strconv.FormatUint(uint64(mp.HostID), 10), strconv.FormatUint(uint64(mp.Size), 10))
		}
		cmd := exec.Command(h.tool, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			done <- fmt.Errorf("%s: %w", h.tool, err)
			continue
		}
		cmds = append(cmds, cmd)
		go func() {
			err := cmd.Wait()
			if err != nil {
				err = fmt.Errorf("%s %s: %v: %s", h.tool, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
			}
			done <- err
		}()
	}
	timeout := time.After(helperTimeout)
	var first error
	for range helpers {
		select {
		case err := <-done:
			if first == nil {
				first = err
			}
		case <-timeout:
			for _, c := range cmds {
				c.Process.Kill()
			}
			return fmt.Errorf("newuidmap/newgidmap did not finish within %s", helperTimeout)
		}
	}
	return first
}
