package boot

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// spawnerProc is boot's handle on `moat spawner` (package spawner), started
// before boot installs its seccomp filter (bootfilter.go). Every process
// boot starts after that goes through it: exec helpers, cloned as boot's
// children (CLONE_PARENT) in the container's pid namespace, and poststart
// hooks, which it runs to the end.
type spawnerProc struct {
	cmd  *exec.Cmd
	conn *ipc.Conn  // the request socket
	mu   sync.Mutex // one request written at a time
	done chan struct{}
	// status says how it ended, valid after done; stopping: boot closed its
	// socket on purpose.
	status   string
	stopping bool
}

// spawnTimeout bounds one spawn request (sent, forked, answered).
const spawnTimeout = 10 * time.Second

// spawnerStopTimeout bounds the wait for the spawner to exit once boot
// closed its socket (it finishes running hooks first: those end at their
// own timeouts).
const spawnerStopTimeout = 5 * time.Second

// errSpawnerGone: later execs fail with it once the spawner died.
var errSpawnerGone = errors.New("moat spawner is gone: no process can be started in the container any more")

// startSpawner starts the spawner from a thread that never exits, so that
// its PDEATHSIG fires only when boot dies (golang/go#27505).
func (b *boot) startSpawner() error {
	spawnerEnd, bootEnd, err := ipc.SocketPair("spawn-requests")
	if err != nil {
		return err
	}
	var d procutil.Donations
	d.Donate("spawn-requests-fd", spawnerEnd)
	var stdio [3]*os.File
	stdio[2] = b.args.LogFile // Go's own panics
	cmd := b.helperCmd(nil, stdio, nil, &d, "spawner")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.Log(b.log, "spawner")
	err = spawnOnKeeperThread(cmd, nil, nil)
	spawnerEnd.Close()
	if err != nil {
		bootEnd.Close()
		return fmt.Errorf("start moat spawner: %w", err)
	}
	sp := &spawnerProc{cmd: cmd, conn: ipc.NewConn(bootEnd), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		sp.mu.Lock()
		sp.status = "exited"
		if err != nil {
			sp.status = err.Error()
		}
		stopping := sp.stopping
		sp.mu.Unlock()
		if !stopping {
			b.log.Error("moat spawner " + sp.status + ": exec into the container fails from now on")
		}
		close(sp.done)
	}()
	b.spawner = sp
	b.chargeHelper(cmd.Process.Pid)
	return nil
}

// stop closes the request socket and waits for the spawner's end; boot's
// death would end it too (EOF, PDEATHSIG).
func (sp *spawnerProc) stop() {
	if sp == nil {
		return
	}
	sp.mu.Lock()
	sp.stopping = true
	sp.conn.Close()
	sp.mu.Unlock()
	select {
	case <-sp.done:
	case <-time.After(spawnerStopTimeout):
		_ = sp.cmd.Process.Kill()
		<-sp.done
	}
}

// request sends one request with its descriptors; the spawner gets the
// other end of the returned reply socket as the first descriptor.
func (sp *spawnerProc) request(m ipc.Message, fds []int, timeout time.Duration) (*ipc.Conn, error) {
	select {
	case <-sp.done:
		return nil, fmt.Errorf("%w (%s)", errSpawnerGone, sp.status)
	default:
	}
	if len(fds)+1 > 64 {
		return nil, fmt.Errorf("%d descriptors for one process: too many to hand to the spawner", len(fds))
	}
	ours, theirs, err := ipc.SocketPair("spawn-reply")
	if err != nil {
		return nil, err
	}
	defer theirs.Close()
	sp.mu.Lock()
	if sp.stopping {
		sp.mu.Unlock()
		ours.Close()
		return nil, errSpawnerGone
	}
	sp.conn.SetDeadline(time.Now().Add(spawnTimeout))
	err = sp.conn.Send(m, append([]int{int(theirs.Fd())}, fds...)...)
	sp.mu.Unlock()
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("%w: %w", errSpawnerGone, err)
	}
	reply := ipc.NewConn(ours)
	reply.SetDeadline(time.Now().Add(timeout))
	return reply, nil
}

// spawn starts cmd through the spawner as boot's child, born in pidNS when
// given; like cmd.Start, it sets cmd.Process, which cmd.Wait reaps.
// Precondition: cmd's stdio are *os.File or nil, cmd.Dir is empty and
// cmd.SysProcAttr asks for Setsid at most.
func (sp *spawnerProc) spawn(cmd *exec.Cmd, pidNS *os.File) error {
	var fds, layout []int
	add := func(f *os.File) {
		if f == nil {
			layout = append(layout, -1)
			return
		}
		layout = append(layout, len(fds))
		fds = append(fds, int(f.Fd()))
	}
	if pidNS != nil {
		fds = append(fds, int(pidNS.Fd()))
	}
	base := len(fds)
	for _, s := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		f, ok := s.(*os.File)
		if s != nil && !ok {
			return fmt.Errorf("spawn %s: stdio must be files", cmd.Path)
		}
		add(f)
	}
	for _, f := range cmd.ExtraFiles {
		add(f)
	}
	for i := range layout {
		if layout[i] >= 0 {
			layout[i] -= base
		}
	}
	req := ipc.BootSpawnRequested{
		Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Files: layout, JoinPidNS: pidNS != nil,
		Setsid: cmd.SysProcAttr != nil && cmd.SysProcAttr.Setsid,
	}
	reply, err := sp.request(req, fds, spawnTimeout)
	if err != nil {
		return err
	}
	defer reply.Close()
	var got ipc.SpawnerSpawned
	files, err := reply.WaitFor(&got)
	if err != nil {
		return fmt.Errorf("moat spawner: %w", err)
	}
	defer closeFiles(files)
	if len(files) != 1 {
		return fmt.Errorf("protocol error: SpawnerSpawned carried %d descriptors", len(files))
	}
	// CLONE_PARENT made it boot's child: wait(2) must know it (without
	// reaping it). Until boot reaps it, its pid is its own.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PIDFD, int(files[0].Fd()), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		return fmt.Errorf("spawned process %d is not boot's child: %w", got.Pid, err)
	}
	p, err := os.FindProcess(got.Pid)
	if err != nil {
		return err
	}
	cmd.Process = p
	return nil
}

// runHooks runs one kind of the spec's hooks in the spawner and returns
// their failures.
func (sp *spawnerProc) runHooks(s *specs.Spec, k hooks.Kind, st *specs.State) []error {
	if len(hooks.List(s, k)) == 0 {
		return nil
	}
	req := ipc.BootHooksRequested{HookKind: string(k), Hooks: s.Hooks, State: st}
	reply, err := sp.request(req, nil, hookBudget(s, k)+spawnTimeout)
	if err != nil {
		return []error{fmt.Errorf("%s hooks: %w", k, err)}
	}
	defer reply.Close()
	var ran ipc.SpawnerHooksRan
	if _, err := reply.WaitFor(&ran); err != nil {
		return []error{fmt.Errorf("%s hooks: moat spawner: %w", k, err)}
	}
	var errs []error
	for _, e := range ran.Errors {
		errs = append(errs, errors.New(e))
	}
	return errs
}
