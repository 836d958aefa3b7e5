package initproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/spec"
)

// capSet is a capability bit mask.
type capSet uint64

func toCapSet(names []string) capSet {
	var s capSet
	for _, n := range names {
		if c, ok := spec.CapabilityByName(n); ok {
			s |= 1 << uint(c)
		}
	}
	return s
}

// lastCap is the highest capability the running kernel knows.
func lastCap() int {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 40
	}
	return n
}

// dropBounding removes every capability outside keep from the bounding set.
// Precondition: runs on the thread that will execve; CAP_SETPCAP effective.
func dropBounding(keep capSet, last int) error {
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				continue // not known to this kernel
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// setCaps sets the effective, permitted and inheritable sets of the calling
// thread, then the ambient set.
// Precondition: runs on the thread that will execve, after the uid switch.
func setCaps(c *specs.LinuxCapabilities, last int) error {
	mask := capSet(1<<uint(last+1)) - 1
	eff, prm, inh := toCapSet(c.Effective)&mask, toCapSet(c.Permitted)&mask, toCapSet(c.Inheritable)&mask
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(prm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(prm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for _, n := range c.Ambient {
		cp, _ := spec.CapabilityByName(n)
		if cp > last {
			continue
		}
		// The kernel refuses an ambient capability that is not both
		// permitted and inheritable; like runc, such a request is skipped
		// (runc's own default spec asks for ambient caps it cannot get).
		_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(cp), 0, 0)
	}
	return nil
}

// switchUser changes to the process's user and groups, keeping the
// capabilities the spec asks for across the change.
// Precondition: runs on the thread that will execve.
func switchUser(p *specs.Process) error {
	caps := p.Capabilities
	last := lastCap()
	if caps != nil {
		if err := dropBounding(toCapSet(caps.Bounding), last); err != nil {
			return err
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("keep capabilities: %w", err)
		}
	}
	gids := make([]int, 0, len(p.User.AdditionalGids))
	for _, g := range p.User.AdditionalGids {
		gids = append(gids, int(g))
	}
	if err := unix.Setgroups(gids); err != nil && !(len(gids) == 0 && err == unix.EPERM) {
		return fmt.Errorf("setgroups %v: %w", gids, err)
	}
	if err := unix.Setresgid(int(p.User.GID), int(p.User.GID), int(p.User.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", p.User.GID, err)
	}
	if err := unix.Setresuid(int(p.User.UID), int(p.User.UID), int(p.User.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", p.User.UID, err)
	}
	if caps == nil {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("reset keepcaps: %w", err)
	}
	return setCaps(caps, last)
}
