package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// A Birthplace lets a process be born in the container's cgroup instead of
// being moved there. Moving a process by pid write-locks every thread
// group on the host (cgroup_threadgroup_rwsem), and the first such lock
// after a quiet spell waits for an RCU grace period: 3–15 ms on the CI VM,
// far more under load, once per create and once per exec, while every
// fork on the host waits too. Two ways around it, both lock-free:
//   - cgroup v1: a thread that writes 0 to a hierarchy's tasks file moves
//     itself alone, without that lock; what it then forks starts in its
//     cgroups (Enter, on the forking thread);
//   - cgroup v2: clone3 with CLONE_INTO_CGROUP (Linux 5.7) starts the
//     child in the cgroup the descriptor names (FD, for
//     SysProcAttr.CgroupFD).
type Birthplace struct {
	v1   map[string]string // controller key (as in Saved.Paths) -> container directory
	home map[string]string // the same keys -> this process's own directory, to leave to
	fd   *os.File          // the container's cgroup v2 directory, or nil
}

// PrepareBirth creates the container's cgroup and writes its limits
// without placing any process (the cgroupfs drivers, as root). It returns
// nil, nil where births cannot be placed (systemd starts its unit with the
// pid; rootless keeps Apply's fallback; a kernel before 5.7 with a v2
// hierarchy): the caller then places the process with Apply or AddPid.
// On error nothing it created remains.
func (m *Manager) PrepareBirth() (*Birthplace, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil || m.saved.Systemd || m.saved.Rootless {
		return nil, nil
	}
	if m.saved.Paths[""] != "" && !cloneIntoCgroup() {
		return nil, nil
	}
	home, err := ownV1Dirs()
	if err != nil {
		return nil, nil // not worked out here: Apply moves the pid as before
	}
	existed := m.lm.Exists()
	b, err := m.prepareBirth(home)
	if err != nil {
		if !existed {
			m.rollback()
		}
		return nil, fmt.Errorf("prepare cgroup of %q: %w", m.saved.ContainerID, err)
	}
	return b, nil
}

func (m *Manager) prepareBirth(home map[string]string) (*Birthplace, error) {
	if err := m.lm.Apply(-1); err != nil {
		return nil, fmt.Errorf("create %s: %w", m.where(), err)
	}
	if err := m.lm.Set(m.cg.Resources); err != nil {
		return nil, fmt.Errorf("set limits in %s: %w", m.where(), err)
	}
	b := &Birthplace{v1: map[string]string{}, home: map[string]string{}}
	for k, dir := range m.saved.Paths {
		if k == "" {
			continue
		}
		h, ok := home[strings.TrimPrefix(k, cgroups.CgroupNamePrefix)]
		if !ok {
			return nil, fmt.Errorf("this process has no cgroup in hierarchy %q", k)
		}
		b.v1[k], b.home[k] = dir, h
	}
	if dir := m.saved.Paths[""]; dir != "" {
		f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", dir, err)
		}
		b.fd = f
	}
	return b, nil
}

// FD is the container's cgroup v2 directory for CLONE_INTO_CGROUP, or -1
// (no v2 hierarchy).
func (b *Birthplace) FD() int {
	if b == nil || b.fd == nil {
		return -1
	}
	return int(b.fd.Fd())
}

// Close releases the v2 directory.
func (b *Birthplace) Close() {
	if b != nil && b.fd != nil {
		b.fd.Close()
	}
}

// Enter moves the calling thread into the container's v1 cgroups, so that
// what it forks is born there, and returns how to move it back (a thread
// that stays, such as boot's keeper, must leave: it would otherwise count
// as a container task, and the cgroup could not be removed).
// Precondition: the caller is locked to its OS thread.
func (b *Birthplace) Enter() (leave func() error, err error) {
	if b == nil {
		return func() error { return nil }, nil
	}
	var entered []string
	leave = func() error {
		var first error
		for _, k := range entered {
			if err := writeSelf(b.home[k]); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for k, dir := range b.v1 {
		if err := writeSelf(dir); err != nil {
			_ = leave()
			return nil, err
		}
		entered = append(entered, k)
	}
	return leave, nil
}

// writeSelf moves the calling thread into the v1 cgroup dir.
func writeSelf(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "tasks"), []byte("0"), 0); err != nil {
		return fmt.Errorf("move thread into %s: %w", dir, err)
	}
	return nil
}

// ownV1Dirs maps each v1 subsystem (and named hierarchy, without "name=")
// to this process's own cgroup directory in it.
func ownV1Dirs() (map[string]string, error) {
	out := map[string]string{}
	if cgroups.IsCgroup2UnifiedMode() {
		return out, nil // no v1 hierarchy: nothing to read
	}
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mounts, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return nil, err
	}
	for _, mnt := range mounts {
		for _, ss := range mnt.Subsystems {
			p, ok := own[ss]
			if !ok {
				p, ok = own[cgroups.CgroupNamePrefix+ss]
			}
			if !ok {
				continue
			}
			rel, err := filepath.Rel(mnt.Root, p)
			if err != nil || strings.HasPrefix(rel, "..") {
				continue // outside this mount's view
			}
			out[strings.TrimPrefix(ss, cgroups.CgroupNamePrefix)] = filepath.Join(mnt.Mountpoint, rel)
		}
	}
	return out, nil
}

// cloneIntoCgroup reports whether clone3 takes CLONE_INTO_CGROUP (Linux 5.7).
var cloneIntoCgroup = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 7
})
