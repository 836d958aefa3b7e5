package cgroup

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// Moat's own per-container processes (boot, the gofer, the net process) are
// charged to the container's resources from a cgroup below the container's,
// HelperDir, so that clients reading the container cgroup's cgroup.procs still
// see only the container's processes (issue 17).
//
//   - cgroup v1 (and hybrid): the helpers join HelperDir in the memory and
//     cpu/cpuacct hierarchies. Usage and limits there are hierarchical, so
//     they count against the container's. They stay out of the freezer
//     (pause never freezes them) and devices hierarchies (the library lists
//     and signals the container's processes from the devices cgroup, so ps
//     and kill --all never see them), and out of pids: a Go process that
//     cannot create a thread dies, so a container reaching its pids limit
//     (a fork bomb, or a build that retries on EAGAIN) would kill its own
//     supervisor instead of seeing EAGAIN.
//   - cgroup v2: the container's cgroup holds processes, so by the
//     no-internal-process rule HelperDir can have no controllers enabled; its
//     processes are then charged to the container's cgroup for every
//     controller, pids included. For the reason above, the helpers are
//     charged only while the container's pids.max is "max" (ErrHelpersUncharged
//     otherwise; Update sends them home when it sets a pids limit).
//     cgroup.freeze and cgroup.kill act on the whole subtree, so before
//     freezing or killing the container the helpers are moved back to the
//     cgroup they came from ("parked"), and returned once the container is
//     thawed.
//
// Only recorded helpers (pid and start time) are ever moved: a container
// process that writes itself into HelperDir stays under the container's
// cgroup, is listed by Pids, and is frozen and killed with the container.
const HelperDir = "moat-helpers"

// unifiedMountpoint is where a pure cgroup v2 host mounts its hierarchy.
const unifiedMountpoint = "/sys/fs/cgroup"

// helperV1 are the v1 hierarchies a helper joins below the container's cgroup.
var helperV1 = []string{"memory", "cpu", "cpuacct"}

// ErrHelpersUncharged reports that moat's processes are not charged to the
// container: on cgroup v2 they would count against its pids limit.
var ErrHelpersUncharged = errors.New("moat's own processes are not charged to a cgroup v2 container with a pids limit")

// Helpers records where the container's helper processes are charged.
type Helpers struct {
	// Paths maps a controller (v1) or "" (v2) to the helpers' cgroup.
	Paths map[string]string `json:"paths"`
	// Home maps the same keys to the cgroup the helpers came from, where they
	// go when parked and before the container's cgroup is removed.
	Home map[string]string `json:"home"`
	// Procs are the helper processes placed so far.
	Procs []HelperProc `json:"procs,omitempty"`
}

// HelperProc identifies one helper process.
type HelperProc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"` // clock ticks since boot (/proc/PID/stat field 22)
}

func (h *Helpers) clone() *Helpers {
	if h == nil {
		return nil
	}
	return &Helpers{Paths: maps.Clone(h.Paths), Home: maps.Clone(h.Home), Procs: slices.Clone(h.Procs)}
}

// AddHelper moves pid, one of moat's own processes for this container, into
// the helpers' cgroup below the container's, creating it on first use.
// Precondition: Apply has created the container's cgroup.
func (m *Manager) AddHelper(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if !m.chargeable() {
		return ErrHelpersUncharged
	}
	start, err := procutil.StartTime(pid)
	if err != nil {
		return fmt.Errorf("charge helper %d to %s: %w", pid, m.where(), err)
	}
	if m.saved.Helpers == nil {
		h, err := m.helperPlaces(pid)
		if err != nil {
			return fmt.Errorf("charge helper %d to %s: %w", pid, m.where(), err)
		}
		m.saved.Helpers = h
	}
	h := m.saved.Helpers
	// Recorded first: a move that fails half way still goes home at
	// Destroy, which could not remove a cgroup it is left in.
	h.Procs = append(h.Procs, HelperProc{Pid: pid, Start: start})
	for _, k := range slices.Sorted(maps.Keys(h.Paths)) {
		dir := h.Paths[k]
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("charge helper %d: create %s: %w", pid, dir, err)
		}
		if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("charge helper %d: move into %s: %w", pid, dir, err)
		}
	}
	return nil
}

// helperPlaces works out the helpers' cgroups below the container's and
// their home, the cgroups pid is in now.
func (m *Manager) helperPlaces(pid int) (*Helpers, error) {
	own, err := cgroups.ParseCgroupFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil, err
	}
	h := &Helpers{Paths: map[string]string{}, Home: map[string]string{}}
	if cgroups.IsCgroup2UnifiedMode() {
		c, ok := m.saved.Paths[""]
		if !ok {
			return nil, errors.New("no cgroup v2 path")
		}
		h.Paths[""] = filepath.Join(c, HelperDir)
		h.Home[""] = filepath.Join(unifiedMountpoint, own[""])
		return h, nil
	}
	for _, k := range helperV1 {
		c, ok := m.saved.Paths[k]
		if !ok || own[k] == "" {
			continue
		}
		mnt, root, err := cgroups.FindCgroupMountpointAndRoot("", k)
		if err != nil {
			return nil, err
		}
		rel := own[k]
		if root != "/" {
			rel = strings.TrimPrefix(rel, root)
		}
		h.Paths[k] = filepath.Join(c, HelperDir)
		h.Home[k] = filepath.Join(mnt, rel)
	}
	if len(h.Paths) == 0 {
		return nil, errors.New("none of the memory and cpu hierarchies is mounted")
	}
	return h, nil
}

// ReleaseHelper moves pid, a helper, back to its home cgroup and forgets it
// (boot does so for itself before removing the container's cgroup).
func (m *Manager) ReleaseHelper(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.saved.Helpers
	if m.lm == nil || h == nil {
		return nil
	}
	i := slices.IndexFunc(h.Procs, func(p HelperProc) bool { return p.Pid == pid })
	if i < 0 {
		return nil
	}
	p := h.Procs[i]
	h.Procs = slices.Delete(h.Procs, i, i+1)
	return m.moveHelpers([]HelperProc{p}, h.Home)
}

// moveHelpers writes each live process of procs into the cgroups of dirs. A
// process that has exited (or whose pid now names another process) is
// skipped: only recorded helpers are ever moved.
func (m *Manager) moveHelpers(procs []HelperProc, dirs map[string]string) error {
	var errs []error
	for _, p := range procs {
		if start, err := procutil.StartTime(p.Pid); err != nil || start != p.Start {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(dirs)) {
			if err := cgroups.WriteCgroupProc(dirs[k], p.Pid); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("move helper %d into %s: %w", p.Pid, dirs[k], err))
			}
		}
	}
	return errors.Join(errs...)
}

// parkHelpers moves the helpers out of the container's cgroup before a
// freeze or kill of the whole subtree (cgroup v2 only; on v1 the freezer and
// devices hierarchies never hold them). It reports whether it moved any.
// Precondition: m.mu held.
func (m *Manager) parkHelpers() (bool, error) {
	h := m.saved.Helpers
	if h == nil || len(h.Procs) == 0 || !cgroups.IsCgroup2UnifiedMode() {
		return false, nil
	}
	return true, m.moveHelpers(h.Procs, h.Home)
}

// unparkHelpers returns parked helpers below the container's cgroup, unless
// the container is frozen (a helper must never be frozen: boot answers
// resume, kill and delete). Precondition: m.mu held.
func (m *Manager) unparkHelpers() error {
	h := m.saved.Helpers
	if h == nil || len(h.Procs) == 0 || !cgroups.IsCgroup2UnifiedMode() {
		return nil
	}
	if st, err := m.lm.GetFreezerState(); err != nil || st != cgroups.Thawed || !m.chargeable() {
		return nil
	}
	return m.moveHelpers(h.Procs, h.Paths)
}

// chargeable reports whether helpers may be charged to the container: always
// on v1 (they stay out of pids), on v2 while its pids.max is "max" (see
// HelperDir). Precondition: m.mu held.
func (m *Manager) chargeable() bool {
	if !cgroups.IsCgroup2UnifiedMode() {
		return true
	}
	max, err := cgroups.ReadFile(m.saved.Paths[""], "pids.max")
	if errors.Is(err, os.ErrNotExist) {
		return true // no pids controller
	}
	return err == nil && strings.TrimSpace(max) == "max"
}

// uncharge sends the helpers home for good once the container gets a pids
// limit on v2 (Update). Precondition: m.mu held.
func (m *Manager) uncharge() error {
	h := m.saved.Helpers
	if h == nil || !cgroups.IsCgroup2UnifiedMode() || m.chargeable() {
		return nil
	}
	return m.moveHelpers(h.Procs, h.Home)
}

// isHelper reports whether pid is a live recorded helper: its start time
// too, or a container process that took a dead helper's pid would be left
// out of Pids and Signal. Precondition: m.mu held.
func (m *Manager) isHelper(pid int) bool {
	h := m.saved.Helpers
	if h == nil {
		return false
	}
	if !slices.ContainsFunc(h.Procs, func(p HelperProc) bool { return p.Pid == pid }) {
		return false
	}
	start, err := procutil.StartTime(pid)
	return err == nil && slices.Contains(h.Procs, HelperProc{Pid: pid, Start: start})
}
