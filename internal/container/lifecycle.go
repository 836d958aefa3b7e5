package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/cgroup"
	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/sandbox"
	"github.com/moat-sandbox/moat/internal/state"
)

// startTimeout bounds `start` (startContainer and poststart hooks included).
const startTimeout = 10 * time.Minute

// Start runs the process of a created container.
func (r *Runtime) Start(id string) error {
	s, lk, err := r.Store.LoadLocked(id)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if st := Status(s); st != specs.StateCreated {
		return wrongState(id, "start", st)
	}
	var started ipc.BootStarted
	if err := sandbox.Request(s.ControllerPath(), ipc.ClientStartRequested{}, &started, startTimeout); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	for _, w := range started.Warnings {
		r.Warn(w)
	}
	s.Started = true
	return s.Save()
}

// Kill sends sig to the container process (or, with all, to every process
// in the container). It works in state created too: a shim kills a
// container whose start failed.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	s, err := r.Store.Load(id)
	if err != nil {
		return err
	}
	st := Status(s)
	if st == specs.StateStopped || st == specs.StateCreating {
		return fmt.Errorf("%w: %s", state.ErrNotRunning, id)
	}
	req := ipc.ClientSignalRequested{Signal: int(sig), All: all}
	var ok ipc.BootSignalled
	err = sandbox.Request(s.ControllerPath(), req, &ok, 10*time.Second)
	if err == nil {
		return nil
	}
	// Boot unreachable but init alive: signal init directly.
	if procutil.SignalIf(s.InitPid, s.InitStart, sig) == nil {
		return nil
	}
	return fmt.Errorf("kill %s: %w", id, err)
}

// stopTimeout bounds how long delete waits for a killed container.
const stopTimeout = 10 * time.Second

// Delete removes a container. A stopped or created container goes without
// --force; a running or paused one needs it. Deleting a container that does
// not exist is an error unless force is set.
func (r *Runtime) Delete(id string, force bool) error {
	s, lk, err := r.Store.LoadLocked(id)
	return r.deleteLocked(id, force, s, lk, err)
}

// deleteLocked is Delete once the state is loaded under its lock (err: why
// it is not).
func (r *Runtime) deleteLocked(id string, force bool, s *state.State, lk *state.Lock, err error) error {
	if err != nil {
		if force && errors.Is(err, state.ErrNotExist) {
			return nil
		}
		return err
	}
	defer lk.Unlock()
	st := Status(s)
	switch st {
	case specs.StateRunning, "paused":
		if !force {
			return state.Said(state.ErrRunning, "cannot delete container %s: it is %s (stop it first, or use --force)", id, st)
		}
	case specs.StateCreating:
		if !force {
			return state.Said(state.ErrRunning, "cannot delete container %s: it is being created (or use --force)", id)
		}
	}
	r.stop(s, st)
	if sp := s.Spec(); st != specs.StateCreating || sp != nil {
		state := hooks.State(s.ID, s.Bundle, 0, specs.StateStopped, sp)
		for _, herr := range hooks.RunAll(sp, hooks.Poststop, state) {
			r.Warn(herr.Error())
		}
	}
	return s.Remove()
}

// stop kills whatever still runs of a container and removes its cgroup.
func (r *Runtime) stop(s *state.State, st specs.ContainerState) {
	if st == "paused" {
		if cg, _ := loadCgroup(s); cg != nil {
			_ = cg.Resume()
		}
	}
	if st != specs.StateStopped {
		_ = procutil.SignalIf(s.InitPid, s.InitStart, unix.SIGKILL)
	}
	// A foreground run that hosts boot (BootPid is its own) deletes only
	// once boot has returned.
	hosted := s.BootPid == os.Getpid() && procutil.Alive(s.BootPid, s.BootStart)
	if s.BootPid != 0 && !hosted && !procutil.WaitGone(s.BootPid, s.BootStart, stopTimeout) {
		r.Log.Warn("moat boot did not exit, killing it", "pid", s.BootPid)
		_ = procutil.SignalIf(s.BootPid, s.BootStart, unix.SIGKILL)
		procutil.WaitGone(s.BootPid, s.BootStart, stopTimeout)
	}
	// Boot removes the cgroup when the container ends; only a boot that
	// was killed leaves it behind.
	if !cgroupLeft(s) {
		return
	}
	if cg, _ := loadCgroup(s); cg != nil {
		_ = cg.Signal(unix.SIGKILL)
		if err := cg.Destroy(); err != nil {
			r.Warn(fmt.Sprintf("remove cgroup of %s: %v", s.ID, err))
		}
	}
}

// cgroupLeft reports whether any of the container's cgroup directories
// still exists.
func cgroupLeft(s *state.State) bool {
	var saved cgroup.Saved
	if len(s.Cgroup) == 0 || json.Unmarshal(s.Cgroup, &saved) != nil {
		return false
	}
	if saved.Systemd {
		return true // the unit may outlive its directory; let systemd say
	}
	for _, p := range saved.Paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// RunOptions are `moat run`'s arguments.
type RunOptions struct {
	CreateOptions
	Detach bool
	Keep   bool
}

// Run creates and starts a container; unless detached it waits for the
// container process, forwarding signals, and returns its exit code.
func (r *Runtime) Run(o RunOptions) (int, error) {
	o.AttachTty = !o.Detach && o.ConsoleSocket == ""
	var sigs chan os.Signal
	if !o.Detach {
		// Boot leaves init's zombie to the nearest subreaper when it
		// exits: in the foreground that is us, and we reap it. We also
		// host boot (one process start fewer), so init is our child.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return 1, fmt.Errorf("become a subreaper: %w", err)
		}
		o.HostBoot = true
		// Caught from here on, so that a signal during create neither
		// kills the process that hosts boot (leaving the container half
		// made) nor is lost: it reaches the container once it runs, as
		// with runc.
		sigs = catchSignals()
		defer signal.Stop(sigs)
	}
	o.Foreground = !o.Detach && o.Stdio[2] != nil
	c, err := r.Create(o.CreateOptions)
	if err != nil {
		return 1, err
	}
	var tty *attachedTty
	if c.Pty != nil {
		if tty, err = attachTty(c.Pty); err != nil {
			r.removeRun(c)
			return 1, err
		}
		defer tty.restore()
	}
	procutil.Trace("cli", "start begins")
	if err := r.Start(o.ID); err != nil {
		if !o.Keep {
			r.removeRun(c)
		}
		return 1, err
	}
	procutil.Trace("cli", "started")
	if o.Detach {
		return 0, nil
	}
	pidfd, err := unix.PidfdOpen(c.State.InitPid, 0)
	if err != nil {
		pidfd = -1 // already gone: nothing left to forward to
	} else {
		defer unix.Close(pidfd)
	}
	code := r.waitForwarding(c, pidfd, sigs, tty)
	if pidfd >= 0 {
		procutil.Reap(pidfd)
	}
	if tty != nil {
		tty.drain()
	}
	procutil.Trace("cli", "boot exited")
	if !o.Keep {
		if err := r.deleteRun(c); err != nil {
			return code, err
		}
		procutil.Trace("cli", "deleted")
	}
	return code, nil
}

// removeRun removes a run's container that failed to start: a hosted boot
// is stopped and has returned before the state goes.
func (r *Runtime) removeRun(c *Created) {
	if c.Sandbox.Hosted() {
		_ = procutil.SignalIf(c.State.InitPid, c.State.InitStart, unix.SIGKILL)
		c.Sandbox.WaitGone(c.State.BootStart, stopTimeout)
	}
	_ = r.deleteRun(c)
}

// hostedLockWait bounds a hosting run's wait for its container's lock at
// the end: a `moat delete` holding it waits for this process to exit, and
// removes the state itself.
const hostedLockWait = time.Second

// deleteRun deletes a run's container once boot has ended.
func (r *Runtime) deleteRun(c *Created) error {
	if !c.Sandbox.Hosted() {
		return r.Delete(c.State.ID, true)
	}
	s, lk, err := r.Store.LoadLockedWithin(c.State.ID, hostedLockWait)
	if errors.Is(err, state.ErrLocked) {
		r.Log.Debug("another moat command holds the container and removes it", "error", err)
		return nil
	}
	return r.deleteLocked(c.State.ID, true, s, lk, err)
}

// waitForwarding waits for boot to exit, forwarding the signals the CLI
// gets to the container process.
func (r *Runtime) waitForwarding(c *Created, pidfd int, sigs chan os.Signal, tty *attachedTty) int {
	done := make(chan int, 1)
	go func() { done <- c.Sandbox.Wait() }()
	return relaySignals(sigs, done, tty, func(sig unix.Signal) {
		if pidfd >= 0 {
			_ = unix.PidfdSendSignal(pidfd, sig, nil, 0)
		}
	})
}
