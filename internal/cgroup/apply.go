package cgroup

import (
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// Destroy retry policy on top of the library's own (~1s of EBUSY retries per
// directory): a killed process can linger in its cgroup for a moment.
const (
	destroyAttempts   = 3
	destroyRetryDelay = 100 * time.Millisecond
)

// Apply creates the container's cgroup(s) if needed, writes the configured
// limits and device rules, and moves pid into them.
//
// With the cgroupfs drivers the cgroup is created and configured before pid
// joins, so a failure (including a value the kernel rejects) removes whatever
// Apply created and leaves pid where it was. With systemd the scope is started
// with pid in it (systemd requires that) and limits are set afterwards; on
// failure the unit is stopped, which also stops pid.
//
// If the manager is rootless and permission is denied, Apply disables the
// manager and returns an error wrapping ErrNoCgroupAccess; the container can
// run on without cgroups.
func (m *Manager) Apply(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if pid <= 0 {
		return fmt.Errorf("apply cgroup of %q: invalid pid %d", m.saved.ContainerID, pid)
	}
	existed := m.lm.Exists()
	var err error
	if m.saved.Systemd {
		err = m.applySystemd(pid)
	} else {
		err = m.applyFS(pid)
	}
	if err == nil {
		return nil
	}
	if !existed {
		m.rollback()
	}
	if m.saved.Rootless && isAccessError(err) {
		m.disable(err.Error())
		return m.unavailable()
	}
	return fmt.Errorf("apply cgroup of %q: %w", m.saved.ContainerID, err)
}

func (m *Manager) applyFS(pid int) error {
	if err := m.lm.Apply(-1); err != nil {
		return fmt.Errorf("create %s: %w", m.where(), err)
	}
	procutil.Trace("boot", "cgroup made")
	if err := m.lm.Set(m.cg.Resources); err != nil {
		return fmt.Errorf("set limits in %s: %w", m.where(), err)
	}
	procutil.Trace("boot", "cgroup limits set")
	if err := m.lm.AddPid("", pid); err != nil {
		return fmt.Errorf("move pid %d into %s: %w", pid, m.where(), err)
	}
	return nil
}

func (m *Manager) applySystemd(pid int) error {
	if err := m.lm.Apply(pid); err != nil {
		return fmt.Errorf("start systemd unit for %s: %w", m.where(), err)
	}
	if err := m.lm.Set(m.cg.Resources); err != nil {
		return fmt.Errorf("set limits in %s: %w", m.where(), err)
	}
	return nil
}

// rollback removes what a failed Apply created and gives the manager a fresh
// library manager (the old one forgets the paths it removed).
func (m *Manager) rollback() {
	_ = m.lm.Destroy()
	if lm, err := newLibManager(m.cg, m.saved.Paths); err == nil {
		m.lm = lm
	}
}

// where names the container's cgroup for messages: the v1 memory (else
// devices) path, or the v2 path.
func (m *Manager) where() string {
	for _, k := range []string{"memory", "devices", ""} {
		if p := m.saved.Paths[k]; p != "" {
			return p
		}
	}
	return "cgroup " + m.saved.ContainerID
}

// AddPid moves another process (e.g. one started by `moat exec`) into the
// container's cgroup(s).
func (m *Manager) AddPid(pid int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return m.unavailable()
	}
	if err := m.lm.AddPid("", pid); err != nil {
		return fmt.Errorf("move pid %d into %s: %w", pid, m.where(), err)
	}
	return nil
}

// Destroy removes the container's cgroup(s) (stopping the systemd unit, if
// any). It is idempotent and a no-op on a disabled manager. A frozen cgroup is
// thawed first so that killed tasks can exit; removal is retried briefly while
// dying processes linger. Live helpers are moved back to their home cgroup
// and the helpers' cgroup goes with the container's. It fails if live
// container processes remain: kill them first (Signal with SIGKILL).
func (m *Manager) Destroy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lm == nil {
		return nil
	}
	// The helpers still alive (boot itself) go home first: a cgroup with
	// processes cannot be removed.
	if h := m.saved.Helpers; h != nil {
		_ = m.moveHelpers(h.Procs, h.Home)
	}
	if st, err := m.lm.GetFreezerState(); err == nil && st == cgroups.Frozen {
		_ = m.lm.Freeze(cgroups.Thawed)
	}
	var err error
	for i := range destroyAttempts {
		if i > 0 {
			time.Sleep(destroyRetryDelay)
		}
		if err = m.lm.Destroy(); err == nil {
			return nil
		}
	}
	msg := ""
	if pids, perr := m.pids(); perr == nil && len(pids) > 0 {
		msg = fmt.Sprintf(" (%d processes still inside: %s)", len(pids), strings.Trim(fmt.Sprint(pids), "[]"))
	}
	return fmt.Errorf("remove cgroup of %q%s: %w", m.saved.ContainerID, msg, err)
}
