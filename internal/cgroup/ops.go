package cgroup

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Update merges r into the container's current resources (see
// mergeResources: set fields win, maps merge by key, lists replace) and
// applies the result, for `moat update`. Device rules cannot be updated and
// r.Devices is ignored, as with runc (containerd resends them unchanged).
// On error the previous resources stay recorded.
func (m *Manager) Update(r *specs.LinuxResources) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if r == nil {
		return nil
	}
	merged := mergeResources(m.saved.Resources, r)
	v2 := cgroups.IsCgroup2UnifiedMode()
	res, notes, err := convertResources(merged, v2)
	if err != nil {
		return fmt.Errorf("update cgroup of %q: %w", m.saved.ContainerID, err)
	}
	if err := checkControllers(res, v2, m.saved.Paths); err != nil {
		return fmt.Errorf("update cgroup of %q: %w", m.saved.ContainerID, err)
	}
	res.Devices = m.cg.Resources.Devices
	res.SkipDevices = true // keep rules other tools (e.g. GPU hooks) added
	if err := m.lm.Set(res); err != nil {
		return fmt.Errorf("update cgroup of %q (%s): %w", m.saved.ContainerID, m.where(), err)
	}
	res.SkipDevices = false
	m.cg.Resources = res
	m.saved.Resources = merged
	m.notes = append(m.notes, notes...)
	if err := m.uncharge(); err != nil {
		return fmt.Errorf("update cgroup of %q: %w", m.saved.ContainerID, err)
	}
	return nil
}

// Pause freezes every process in the container's cgroup.
func (m *Manager) Pause() error { return m.setFrozen(cgroups.Frozen, "pause") }

// Resume thaws the container's cgroup.
func (m *Manager) Resume() error { return m.setFrozen(cgroups.Thawed, "resume") }

// setFrozen freezes or thaws the container's cgroup. On cgroup v2 the
// helpers are parked first and return after a thaw (see HelperDir).
func (m *Manager) setFrozen(state cgroups.FreezerState, verb string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if state == cgroups.Frozen {
		if _, err := m.parkHelpers(); err != nil {
			return fmt.Errorf("%s container %q: %w", verb, m.saved.ContainerID, err)
		}
	}
	if err := m.lm.Freeze(state); err != nil {
		if state == cgroups.Frozen {
			_ = m.unparkHelpers()
		}
		return fmt.Errorf("%s container %q (%s): %w", verb, m.saved.ContainerID, m.where(), err)
	}
	if state == cgroups.Thawed {
		if err := m.unparkHelpers(); err != nil {
			return fmt.Errorf("%s container %q: %w", verb, m.saved.ContainerID, err)
		}
	}
	return nil
}

// Paused reports whether the container's cgroup is frozen by its own freezer
// (not merely by a frozen ancestor). A disabled manager is never paused.
func (m *Manager) Paused() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return false, nil
	}
	st, err := m.lm.GetFreezerState()
	if err != nil {
		return false, fmt.Errorf("read freezer state of %q (%s): %w", m.saved.ContainerID, m.where(), err)
	}
	return st == cgroups.Frozen, nil
}

// Pids returns the sorted pids of every process in the container's cgroup and
// its sub-cgroups but moat's own helpers; none if the cgroup no longer exists.
func (m *Manager) Pids() ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return nil, m.unavailable()
	}
	return m.pids()
}

func (m *Manager) pids() ([]int, error) {
	if !m.lm.Exists() {
		return nil, nil
	}
	pids, err := m.lm.GetAllPids()
	if err != nil {
		return nil, fmt.Errorf("list processes of %q (%s): %w", m.saved.ContainerID, m.where(), err)
	}
	pids = slices.DeleteFunc(pids, m.isHelper)
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// Signal sends sig to every process in the container's cgroup (kill --all).
// SIGKILL on cgroup v2 uses cgroup.kill. Otherwise, like runc, the cgroup is
// frozen while its pids are listed and signalled, so no process can fork past
// the signal. A container that was paused stays paused (the v1 freezer holds
// the signal until Resume; v2 lets fatal signals through), except for
// SIGKILL, which thaws it so the kill takes effect. Processes that exit meanwhile are not an error; a missing cgroup
// means there is nothing to signal.
func (m *Manager) Signal(sig unix.Signal) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if !m.lm.Exists() {
		return nil
	}
	st, _ := m.lm.GetFreezerState()
	wasFrozen := st == cgroups.Frozen
	parked, err := m.parkHelpers()
	if err != nil {
		return fmt.Errorf("signal %v to container %q: %w", sig, m.saved.ContainerID, err)
	}
	if parked {
		defer func() { _ = m.unparkHelpers() }()
	}
	if sig == unix.SIGKILL && cgroups.IsCgroup2UnifiedMode() {
		err := cgroups.WriteFile(m.lm.Path(""), "cgroup.kill", "1")
		if err == nil {
			if wasFrozen {
				_ = m.lm.Freeze(cgroups.Thawed)
			}
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) { // no cgroup.kill before Linux 5.14
			return fmt.Errorf("kill container %q (%s/cgroup.kill): %w", m.saved.ContainerID, m.where(), err)
		}
	}
	return m.signalEach(sig, wasFrozen)
}

// signalEach is Signal's freeze, list, kill, thaw sequence.
func (m *Manager) signalEach(sig unix.Signal, wasFrozen bool) error {
	var errs []error
	froze := false
	if !wasFrozen {
		// Best effort, as in runc: without a freezer, signal anyway.
		froze = m.lm.Freeze(cgroups.Frozen) == nil
	}
	pids, err := m.lm.GetAllPids()
	if err != nil {
		errs = append(errs, fmt.Errorf("list processes: %w", err))
	}
	for _, pid := range slices.DeleteFunc(pids, m.isHelper) {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	if froze || (wasFrozen && sig == unix.SIGKILL) {
		if err := m.lm.Freeze(cgroups.Thawed); err != nil {
			errs = append(errs, fmt.Errorf("thaw: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("signal %v to container %q (%s): %w", sig, m.saved.ContainerID, m.where(), err)
	}
	return nil
}

// Stats reads the container's cgroup statistics in the shape of runc's
// `events --stats` data.
func (m *Manager) Stats() (*Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return nil, m.unavailable()
	}
	st, err := m.lm.GetStats()
	if err != nil {
		return nil, fmt.Errorf("read cgroup stats of %q (%s): %w", m.saved.ContainerID, m.where(), err)
	}
	return convertStats(st), nil
}
