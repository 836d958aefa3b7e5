// Package boot runs inside `moat boot`, the sandbox supervisor. It creates
// the container init in its new namespaces, answers the CLI's commands over
// the controller socket, spawns exec'd processes, and once init has exited
// tears the container down and exits with init's status, leaving init's
// zombie to the subreaper above it (the shim or conmon waiting on the pid
// named by --pid-file, which is init's).
package boot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/cgroup"
	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/network"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
)

// Args are `moat boot`'s flags: its donated descriptors and identity.
type Args struct {
	ID           string
	Bundle       string
	PlanFD       int      // the CLI's plan (ipc.Plan): the effective spec and what was decided for it
	ExeFD        int      // protected moat (procutil.ExeCopy) for the init and exec helpers
	CreateSyncFD int      // socket to the creating CLI
	ControllerFD int      // listening controller socket
	StdioFDs     []int    // the container's stdin, stdout, stderr
	ExtraFDs     []int    // --preserve-fds and LISTEN_FDS, in order
	ListenFDs    int      // how many of ExtraFDs came from LISTEN_FDS
	LogFile      *os.File // boot's log, shared with its helpers (nil: stderr)
	// Config is the effective configuration (annotations already applied
	// by the CLI).
	Config *config.Config
	// Hosted: boot runs inside the CLI of a foreground `moat run` (as root,
	// without a user namespace), not in a process of its own. Plan is then
	// the CLI's plan itself (PlanFD is unused), and the CLI, which relays
	// every signal it gets to the container, is the one to do so: boot
	// does not catch signals. Every descriptor above is boot's own either
	// way (the CLI hands over duplicates), and Main closes them.
	Hosted bool
	Plan   *ipc.Plan
}

// commitTimeout bounds the wait for the CLI to record a created container.
const commitTimeout = 60 * time.Second

// boot is the supervisor's state.
type boot struct {
	args Args
	log  *slog.Logger
	plan *ipc.Plan
	cg   *cgroup.Manager // nil without cgroups
	// birth places init and exec helpers in the cgroup at fork (nil: they
	// are moved there by pid).
	birth *cgroup.Birthplace
	init  *initProc
	exe   *os.File // protected moat (procutil.ExeCopy), for init and exec helpers
	// exeCopied: exe is a memfd copy, dropped once the container runs.
	exeCopied bool

	mu       sync.Mutex
	started  bool
	execPids map[int]uint64 // running exec'd processes and their start times (guarded by mu)
	execs    sync.WaitGroup
	warnings []string
	// gofer serves the container's files (--file-access=gofer); goferIO
	// are init's ends of its io sockets, handed to init with its config.
	gofer   *goferProc
	goferIO []*os.File
	// shared is the shared gofer serving the root (--shared-gofer), if any.
	shared *sharedRoot
	// cgNoAccess records why the container has no cgroup (rootless).
	cgNoAccess json.RawMessage
	// cgDecided: the container's cgroup exists (or it has none);
	// pendingHelpers wait for it (chargeHelper).
	cgDecided      bool
	pendingHelpers []int
	// netSettings and net are the sandbox network and its process (nil
	// without one).
	netSettings *network.Settings
	net         *netProc
	// userNS: boot runs in a user namespace (rootless, or the spec's own):
	// devices are bound, locked mount flags kept, cgroups best-effort.
	userNS bool
	// ownNS are boot's own namespaces, read before any thread left them.
	ownNS ownNamespaces
	// sharedImg is the shared root's image as keyed, "dev:ino"
	// (sharedgofer.go).
	sharedImg string
	// spawner forks boot's children once boot is filtered (spawner.go).
	spawner *spawnerProc
}

// Main creates the container and supervises it until its process exits. It
// returns the exit code for `moat boot` (the container's status, or 128+sig).
func Main(a Args, log *slog.Logger) (int, error) {
	procutil.Trace("boot", "main")
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 1, fmt.Errorf("set non-dumpable: %w", err)
	}
	createConn, err := ipc.FromFD(a.CreateSyncFD, "create-sync")
	if err != nil {
		return 1, err
	}
	defer createConn.Close()
	b := &boot{args: a, log: log, userNS: rootless.InUserNS()}
	if b.ownNS, err = readOwnNamespaces(); err != nil {
		_ = createConn.Send(ipc.FailedFrom("boot", err))
		return 1, err
	}
	pty, err := b.create(createConn)
	if err != nil {
		b.abort()
		_ = createConn.Send(ipc.FailedFrom("boot", err))
		return 1, err
	}
	if err := installBootFilter(); err != nil {
		b.abort()
		_ = createConn.Send(ipc.FailedFrom("boot", err))
		return 1, err
	}
	procutil.Trace("boot", "seccomp filter installed")
	if err := b.reportCreated(createConn, pty); err != nil {
		b.abort()
		return 1, err
	}
	b.harden()
	return b.supervise(), nil
}

// create reads the spec, starts init, and while init starts up prepares
// the container's cgroup; then it walks init through creation.
func (b *boot) create(createConn *ipc.Conn) (*os.File, error) {
	plan, err := b.readPlan()
	if err != nil {
		return nil, err
	}
	b.plan = plan
	procutil.Trace("boot", "plan read")
	cfg := b.args.Config
	if err := b.planNetwork(cfg); err != nil {
		return nil, err
	}
	// The net process and the gofer run boot's own binary: only init
	// waits for the protected copy, which the CLI may still be filling (a
	// memfd, rootless).
	if err := b.spawnNet(); err != nil {
		return nil, err
	}
	if err := b.startGoferAndCgroup(cfg); err != nil {
		return nil, err
	}
	if err := b.takeExe(createConn); err != nil {
		return nil, err
	}
	procutil.Trace("boot", "executable checked")
	// Before init: it starts up meanwhile.
	if err := b.startSpawner(); err != nil {
		return nil, err
	}
	initNS, initTypes, err := b.startInit()
	if err != nil {
		return nil, err
	}
	defer closeFiles(initNS)
	// Otherwise init, which waits for its configuration, is moved now:
	// the move costs an RCU grace period (~14 ms on the CI VM), spent
	// while the gofer builds its jail.
	if b.cg != nil && b.birth == nil {
		if err := b.cg.Apply(b.init.pid); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		procutil.Trace("boot", "init placed in its cgroup")
	}
	charged, bootCharged := b.chargeHelpers()
	goferPlan, err := b.awaitGoferPlan()
	var pty *os.File
	if err == nil {
		pty, err = b.configureInit(initTypes, initNS, goferPlan)
	}
	<-charged
	if err != nil {
		return nil, err
	}
	if !bootCharged {
		// Boot joins last: the createRuntime and prestart hooks it ran
		// are not the container's, and on cgroup v2 its device filter
		// would apply to them.
		b.chargeHelper(os.Getpid())
		procutil.Trace("boot", "boot charged")
	}
	return pty, nil
}

// readPlan decodes the CLI's plan from --plan-fd, or takes a hosting CLI's.
func (b *boot) readPlan() (*ipc.Plan, error) {
	if b.args.Hosted {
		return b.args.Plan, nil
	}
	f := os.NewFile(uintptr(b.args.PlanFD), "plan")
	defer f.Close()
	return ipc.ReadPlan(f)
}

// startGoferAndCgroup starts the file servers (--file-access=gofer: the
// container's gofer, or a shared one and a gofer for its binds) while it
// makes the container's cgroup: init is born in it where it can be
// (cgroup.Birthplace), made first with its limits, and nothing is moved.
func (b *boot) startGoferAndCgroup(cfg *config.Config) error {
	goferErr := make(chan error, 1)
	switch {
	case cfg.FileAccess != config.FileAccessGofer:
		goferErr <- nil
	case b.plan.Gofer == nil:
		return fmt.Errorf("the plan has no part for the gofer (--file-access=gofer)")
	default:
		go func() { goferErr <- b.startFileServers(cfg) }()
	}
	err := b.newCgroup()
	if err == nil && b.cg != nil {
		if b.birth, err = b.cg.PrepareBirth(); err != nil {
			err = fmt.Errorf("cgroup: %w", err)
		}
	}
	procutil.Trace("boot", "cgroup ready")
	if gerr := <-goferErr; err == nil {
		err = gerr
	}
	return err
}

// exeTimeout bounds the wait for the CLI's copy of moat.
const exeTimeout = 60 * time.Second

// takeExe waits until the CLI has finished the protected moat donated as
// --exe-fd and checks the seals.
func (b *boot) takeExe(conn *ipc.Conn) error {
	exe := os.NewFile(uintptr(b.args.ExeFD), "moat-exe")
	conn.SetDeadline(time.Now().Add(exeTimeout))
	var sealed ipc.ClientExeSealed
	if _, err := conn.WaitFor(&sealed); err != nil {
		exe.Close()
		return fmt.Errorf("waiting for the protected executable: %w", err)
	}
	copied, err := procutil.CheckProtected(exe)
	if err != nil {
		exe.Close()
		return err
	}
	b.exe, b.exeCopied = exe, copied
	return nil
}

func (b *boot) newCgroup() error {
	m, err := cgroup.New(cgroup.Options{
		ContainerID: b.args.ID,
		CgroupsPath: b.plan.Spec.Linux.CgroupsPath,
		Systemd:     b.args.Config.SystemdCgroup,
		Rootless:    b.userNS || os.Geteuid() != 0,
		Resources:   b.plan.Spec.Linux.Resources,
		Devices:     b.plan.Spec.Linux.Devices,
	})
	if errors.Is(err, cgroup.ErrNoCgroupAccess) && m != nil {
		// Rootless without a delegated cgroup: run without limits, once
		// said (DESIGN.md, Rootless). The disabled manager's record keeps
		// the reason for pause and update to report.
		if hasLimits(b.plan.Spec.Linux.Resources) {
			b.warnings = append(b.warnings, fmt.Sprintf("resource limits are not applied: %v", err))
		} else {
			b.log.Debug("running without cgroups", "reason", err)
		}
		b.cgNoAccess, _ = json.Marshal(m.Saved())
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	b.cg = m
	b.warnings = append(b.warnings, m.Warnings()...)
	return nil
}

// chargeHelper charges one of moat's own processes for this container (boot
// itself, the gofer, the net process) to the container's resources: pid
// moves into the helpers' cgroup below the container's (cgroup.HelperDir),
// whose processes count against the container's memory and cpu limits (and
// pids on cgroup v2 without a pids limit) but are not listed by clients and
// never frozen by pause. Called before the container's cgroup exists, it
// places pid once it does. Without a cgroup (rootless without delegation) it
// does nothing; a failure is a warning. Precondition: called from
// create's goroutine, before the container is reported created (the state
// records the helpers for `moat pause` on cgroup v2).
func (b *boot) chargeHelper(pid int) {
	if !b.cgDecided {
		b.pendingHelpers = append(b.pendingHelpers, pid)
		return
	}
	if b.cg == nil {
		return
	}
	err := b.cg.AddHelper(pid)
	if errors.Is(err, cgroup.ErrHelpersUncharged) {
		b.log.Debug("helper not charged to the container", "pid", pid, "reason", err)
		return
	}
	if err != nil {
		// Not fatal: the container runs as before, its limits only miss
		// moat's share (e.g. a v2 cgroup.max.descendants of 0 refuses the
		// helpers' cgroup).
		b.mu.Lock()
		b.warnings = append(b.warnings, fmt.Sprintf("moat's own processes are not charged to the container: %v", err))
		b.mu.Unlock()
	}
}

// chargeHelpers charges the helpers started so far (the gofer, and boot
// itself when nothing forbids it yet: cgroup v1, where the helpers are in
// no devices hierarchy, and no prestart or createRuntime hook to run) in
// the background, while init starts and is configured: the first move by
// pid waits for an RCU grace period (~10 ms here), the next ones ride on
// it. charged is closed when done; bootCharged says whether boot was.
func (b *boot) chargeHelpers() (charged chan struct{}, bootCharged bool) {
	b.cgDecided = true
	batch := b.pendingHelpers
	b.pendingHelpers = nil
	if b.gofer != nil {
		batch = append(batch, b.gofer.cmd.Process.Pid)
	}
	sp := b.plan.Spec
	if b.cg != nil && !cgroups.IsCgroup2UnifiedMode() &&
		len(hooks.List(sp, hooks.Prestart)) == 0 && len(hooks.List(sp, hooks.CreateRuntime)) == 0 {
		batch = append(batch, os.Getpid())
		bootCharged = true
	}
	charged = make(chan struct{})
	go func() {
		defer close(charged)
		for _, pid := range batch {
			b.chargeHelper(pid)
		}
		procutil.Trace("boot", "helpers charged")
	}()
	return charged, bootCharged
}

// harden gives up, once the container is created, what boot no longer needs:
// in a user namespace, every capability but those listed in caps.go.
func (b *boot) harden() {
	if !b.userNS {
		return
	}
	if err := dropCapabilities(); err != nil {
		b.log.Error("hardening boot", "error", err)
		return
	}
	procutil.Trace("boot", "capabilities dropped")
}

// hasLimits reports whether the spec asks for any resource limit (device
// rules alone are enforced by moat's device setup, not only by cgroups).
func hasLimits(r *specs.LinuxResources) bool {
	if r == nil {
		return false
	}
	return r.Memory != nil || r.CPU != nil || r.Pids != nil || r.BlockIO != nil ||
		len(r.HugepageLimits) > 0 || r.Network != nil || len(r.Rdma) > 0 || len(r.Unified) > 0
}

// reportCreated hands the created container to the CLI and waits until the
// CLI has recorded it. Without that record nobody could ever stop the
// container, so a CLI that goes away first gets the container torn down.
func (b *boot) reportCreated(conn *ipc.Conn, pty *os.File) error {
	msg := ipc.BootCreated{
		InitPid: b.init.pid, InitStart: b.init.start,
		Warnings: b.warnings, HasPty: pty != nil,
	}
	if b.cg != nil {
		raw, err := json.Marshal(b.cg.Saved())
		if err != nil {
			return err
		}
		msg.Cgroup = raw
	} else {
		msg.Cgroup = b.cgNoAccess
	}
	var fds []int
	if pty != nil {
		fds = append(fds, int(pty.Fd()))
		defer pty.Close()
	}
	conn.SetDeadline(time.Now().Add(commitTimeout))
	if err := conn.Send(msg, fds...); err != nil {
		return err
	}
	procutil.Trace("boot", "created sent")
	var commit ipc.ClientCreateCommitted
	if _, err := conn.WaitFor(&commit); err != nil {
		return fmt.Errorf("the creating moat command went away before recording the container: %w", err)
	}
	procutil.Trace("boot", "committed")
	return nil
}

// supervise serves the controller until the container process exits, then
// cleans up and returns its exit code.
func (b *boot) supervise() int {
	// Non-blocking before wrapping: accept then goes through the runtime
	// poller, and closing the listener wakes it.
	if err := unix.SetNonblock(b.args.ControllerFD, true); err != nil {
		b.log.Error("controller socket", "error", err)
	}
	ln := os.NewFile(uintptr(b.args.ControllerFD), "controller")
	srv := &controller{b: b, ln: ln}
	go srv.serve()
	sigs := make(chan os.Signal, 16)
	if !b.args.Hosted {
		signal.Notify(sigs, forwardedSignals...)
	}
	var code int
	var goferDone, sharedDone <-chan struct{}
	if b.gofer != nil {
		goferDone = b.gofer.done
	}
	if b.shared != nil {
		sharedDone = b.shared.done
	}
	for done := false; !done; {
		select {
		case s := <-sigs:
			b.log.Debug("forwarding signal to the container", "signal", s)
			_ = b.init.signal(s.(unix.Signal))
		case <-sharedDone:
			b.log.Error("shared gofer gone; killing the container")
			b.init.kill()
			<-b.init.done
			code, done = goferDiedCode, true
		case <-goferDone:
			// Fail closed: the container's files are gone with it.
			b.log.Error("gofer exited: " + b.gofer.status + "; killing the container")
			b.init.kill()
			<-b.init.done
			code, done = goferDiedCode, true
		case <-b.init.done:
			procutil.Trace("boot", "init exited")
			code = b.init.code
			done = true
			// A container that failed because the gofer died (its file
			// operations fail at once) often ends before boot has reaped
			// the gofer: say which one went first.
			if code != 0 && b.gofer != nil {
				if status, exited := b.gofer.exitStatus(goferExitGrace); exited {
					b.log.Error("gofer exited: " + status + "; the container ended with it")
					code = goferDiedCode
				}
			}
		}
	}
	signal.Stop(sigs)
	b.killRest()
	srv.close()
	b.teardown()

	procutil.Trace("boot", "teardown done")
	return code
}

// goferExitGrace covers the instant between a dying gofer closing its FUSE
// descriptors (the container's file operations fail) and its exit showing
// on its pidfd; only a container that failed waits it.
const goferExitGrace = 20 * time.Millisecond

// goferDiedCode is boot's exit status when the gofer died under a running
// container: not a status the container's process could have produced.
const goferDiedCode = 255

// forwardedSignals reach the container process when sent to boot, so that
// boot is transparent to whoever holds its pid.
var forwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGALRM, unix.SIGWINCH, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
}

// killRest kills what is left of the container once init has exited.
// Without its own pid namespace the other processes do not die with init.
func (b *boot) killRest() {
	if b.newPidNS() {
		return
	}
	if b.cg != nil {
		_ = b.cg.Signal(unix.SIGKILL)
	} else {
		_ = b.signalAll(unix.SIGKILL)
	}
}

// teardown removes the cgroup once every process is gone.
func (b *boot) teardown() {
	procutil.WaitTimeout(b.execs.Wait, 2*time.Second)
	// The gofer's mounts live in the container's mount namespace; once the
	// last reference (ours included) is gone, it is unmounted and the gofer
	// ends by itself.
	b.init.closeNamespaces()
	b.stopNetwork()
	b.gofer.stop(5 * time.Second)
	b.shared.close()
	procutil.Trace("boot", "gofer stopped")
	b.spawner.stop()
	if b.cg != nil {
		if err := b.cg.Destroy(); err != nil {
			b.log.Warn("remove cgroup", "error", err)
		}
		procutil.Trace("boot", "cgroup removed")
	}
	b.birth.Close()
	b.dropExe()
}

// abort undoes a failed create: kill init, wait for it, remove the cgroup.
func (b *boot) abort() {
	if b.init != nil {
		b.init.kill()
		if b.init.exitedWithin(5 * time.Second) {
			b.init.reap()
		} else {
			b.log.Error("container init did not exit after SIGKILL", "pid", b.init.pid)
		}
		b.init.closeNamespaces()
	}
	b.stopNetwork()
	closeFiles(b.goferIO)
	b.shared.close()
	if b.gofer != nil {
		_ = b.gofer.cmd.Process.Kill()
		b.gofer.stop(5 * time.Second)
	}
	b.spawner.stop()
	if b.cg != nil {
		if err := b.cg.Destroy(); err != nil {
			b.log.Warn("remove cgroup", "error", err)
		}
	}
	b.birth.Close()
	b.dropExe()
}

// runHooks runs a hook list in boot (the runtime namespace).
func (b *boot) runHooks(k hooks.Kind, status specs.ContainerState) error {
	st := hooks.State(b.args.ID, b.args.Bundle, b.init.pid, status, b.plan.Spec)
	return hooks.Run(b.plan.Spec, k, st)
}

// recvErr describes a failed receive from init, preferring init's exit
// status when init died.
func (b *boot) recvErr(what string, err error) error {
	if errors.Is(err, ipc.ErrPeerClosed) || errors.Is(err, io.EOF) {
		if b.init.exitedWithin(2 * time.Second) {
			return fmt.Errorf("container init exited (status %d) while %s", b.init.code, what)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
