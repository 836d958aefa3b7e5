// Package spawner runs inside `moat spawner`, the one process that forks
// boot's children once boot is under its own seccomp filter. A filter is
// inherited through fork, and an exec helper or a hook must get exactly
// what the spec gives (an exec'd process the spec's filter, a hook none):
// since no unfiltered thread can be kept inside a Go process, boot starts
// this process before it filters itself, and asks it for every later child.
//
// Exec helpers are cloned with CLONE_PARENT, so that they are boot's
// children (boot waits for them, signals them, reads their /proc as
// before); poststart hooks are run here to the end, with their timeouts.
//
// Confinement: non-dumpable, only CAP_SYS_ADMIN effective and permitted (to
// join the container's pid namespace); the bounding set stays whole, as in
// boot, because its children are executed as uid 0 and take their
// capabilities from it. No no_new_privs (its children inherit it, and a
// container process gets no_new_privs only when the spec asks) and no
// seccomp filter (that is the point). It dies with boot: PDEATHSIG, and
// EOF on the request socket.
package spawner

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// replyTimeout bounds sending one reply to boot.
const replyTimeout = 10 * time.Second

// maxInFlight bounds the requests served at once (hooks can take minutes).
const maxInFlight = 64

// Main serves boot's requests until boot's end of the socket closes.
func Main(requestsFD int, log *slog.Logger) error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	if err := keepOnlySysAdmin(); err != nil {
		return err
	}
	conn, err := ipc.FromFD(requestsFD, "spawn-requests")
	if err != nil {
		return err
	}
	defer conn.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	s := &server{log: log, null: null, slots: make(chan struct{}, maxInFlight)}
	// Idle nearly always: its start-up's code pages go (as boot's, the gofer's).
	procutil.FindStartupPages().DropAfter(procutil.IdleAfter)
	for {
		// No deadline: this wait ends when boot goes away (EOF).
		raw, err := conn.Recv()
		if errors.Is(err, ipc.ErrPeerClosed) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading boot's requests: %w", err)
		}
		if len(raw.Files) == 0 {
			raw.CloseFiles()
			return fmt.Errorf("protocol error: %s without a reply socket", raw.Type)
		}
		reply := ipc.NewConn(raw.Files[0])
		raw.Files = raw.Files[1:]
		s.slots <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer func() { <-s.slots; s.wg.Done() }()
			s.serve(raw, reply)
		}()
	}
	// Running hooks end at their own timeouts.
	s.wg.Wait()
	return nil
}

type server struct {
	log   *slog.Logger
	null  *os.File
	slots chan struct{}
	wg    sync.WaitGroup
}

// serve answers one request on its reply socket; it owns both.
func (s *server) serve(raw *ipc.Raw, reply *ipc.Conn) {
	defer reply.Close()
	defer raw.CloseFiles()
	var msg ipc.Message
	var fds []int
	var err error
	switch raw.Type {
	case ipc.BootSpawnRequested{}.Kind():
		var req ipc.BootSpawnRequested
		if err = raw.Decode(&req); err == nil {
			var pid, pidfd int
			if pid, pidfd, err = s.spawn(&req, raw.Files); err == nil {
				defer unix.Close(pidfd)
				msg, fds = ipc.SpawnerSpawned{Pid: pid}, []int{pidfd}
			}
		}
	case ipc.BootHooksRequested{}.Kind():
		var req ipc.BootHooksRequested
		if err = raw.Decode(&req); err == nil {
			msg = runHooks(&req)
		}
	default:
		err = fmt.Errorf("protocol error: unexpected %s", raw.Type)
	}
	if err != nil {
		msg, fds = ipc.FailedFrom("spawner", err), nil
	}
	reply.SetDeadline(time.Now().Add(replyTimeout))
	if serr := reply.Send(msg, fds...); serr != nil {
		s.log.Warn("replying to boot", "error", serr)
	}
}

// spawn forks the child as boot's (CLONE_PARENT) and executes it.
func (s *server) spawn(req *ipc.BootSpawnRequested, files []*os.File) (pid, pidfd int, err error) {
	var pidNS *os.File
	if req.JoinPidNS {
		if len(files) == 0 {
			return 0, 0, errors.New("protocol error: no pid namespace descriptor")
		}
		pidNS, files = files[0], files[1:]
	}
	if req.Path == "" || len(req.Args) == 0 {
		return 0, 0, errors.New("protocol error: nothing to execute")
	}
	childFiles := make([]uintptr, len(req.Files))
	for i, idx := range req.Files {
		switch {
		case idx >= 0 && idx < len(files):
			childFiles[i] = files[idx].Fd()
		case idx == -1 && i < 3:
			childFiles[i] = s.null.Fd()
		case idx == -1:
			childFiles[i] = ^uintptr(0) // closed in the child
		default:
			return 0, 0, fmt.Errorf("protocol error: child fd %d names file %d of %d", i, idx, len(files))
		}
	}
	pidfd = -1
	attr := &syscall.ProcAttr{
		Env: req.Env, Files: childFiles,
		Sys: &syscall.SysProcAttr{Setsid: req.Setsid, Cloneflags: unix.CLONE_PARENT, PidFD: &pidfd},
	}
	type result struct {
		pid int
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if pidNS != nil {
			// Not unlocked: this thread's children are born in the
			// container's pid namespace; it dies with the goroutine.
			if err := unix.Setns(int(pidNS.Fd()), unix.CLONE_NEWPID); err != nil {
				res <- result{err: fmt.Errorf("join the container's pid namespace: %w", err)}
				return
			}
		} else {
			defer runtime.UnlockOSThread()
		}
		pid, err := syscall.ForkExec(req.Path, req.Args, attr)
		res <- result{pid, err}
	}()
	r := <-res
	if r.err != nil {
		return 0, 0, fmt.Errorf("fork and execute %s: %w", req.Path, r.err)
	}
	return r.pid, pidfd, nil
}

// runHooks runs the requested hooks here: they are the spawner's children,
// each killed at its timeout, and only their outcome goes back to boot.
func runHooks(req *ipc.BootHooksRequested) ipc.Message {
	var out ipc.SpawnerHooksRan
	s := &specs.Spec{Hooks: req.Hooks}
	for _, err := range hooks.RunAll(s, hooks.Kind(req.HookKind), req.State) {
		out.Errors = append(out.Errors, err.Error())
	}
	return out
}

// keepOnlySysAdmin reduces every thread to CAP_SYS_ADMIN (setns into the
// container's pid namespace); the bounding set stays whole for the
// children, executed as uid 0.
func keepOnlySysAdmin() error {
	if err := procutil.SetCaps(1 << unix.CAP_SYS_ADMIN); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}
