package boot

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/state"
)

// controller serves the unix socket in the state directory. One request per
// connection; see the diagram in package ipc.
type controller struct {
	b    *boot
	ln   *os.File
	once sync.Once
	// inflight counts requests being answered: boot must not exit (when a
	// short-lived container ends) before its answer to start is sent.
	inflight sync.WaitGroup
}

// requestTimeout bounds the wait for a client's request.
const requestTimeout = 10 * time.Second

func (c *controller) serve() {
	rc, err := c.ln.SyscallConn()
	if err != nil {
		return
	}
	for {
		var nfd int
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if aerr != nil {
			continue
		}
		if !c.peerAllowed(nfd) {
			unix.Close(nfd)
			continue
		}
		conn, err := ipc.FromFD(nfd, "controller-conn")
		if err != nil {
			unix.Close(nfd)
			continue
		}
		c.inflight.Add(1)
		go func() {
			defer c.inflight.Done()
			c.handle(conn)
		}()
	}
}

// peerAllowed admits only our own user and root. The state directory is
// 0700 already; this holds even if someone loosens it. In a user namespace
// that does not map the caller (root creating a spec's user namespace), the
// CLI shows up as the overflow uid.
func (c *controller) peerAllowed(fd int) bool {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return false
	}
	if cred.Uid == 0 || int(cred.Uid) == os.Geteuid() {
		return true
	}
	return c.b.userNS && cred.Uid == overflowUID()
}

// overflowUID is the uid unmapped ids show up as.
func overflowUID() uint32 {
	data, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 65534
	}
	return uint32(n)
}

// close stops accepting and waits (bounded) for the answers under way.
func (c *controller) close() {
	c.once.Do(func() { c.ln.Close() })
	procutil.WaitTimeout(c.inflight.Wait, 5*time.Second)
}

func (c *controller) handle(conn *ipc.Conn) {
	conn.SetDeadline(time.Now().Add(requestTimeout))
	raw, err := conn.Recv()
	if err != nil {
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	var reply ipc.Message
	switch raw.Type {
	case ipc.ClientStartRequested{}.Kind():
		raw.CloseFiles()
		reply, err = c.b.start()
	case ipc.ClientSignalRequested{}.Kind():
		raw.CloseFiles()
		var req ipc.ClientSignalRequested
		if err = raw.Decode(&req); err == nil {
			reply, err = c.b.signal(req)
		}
	case ipc.ClientPsRequested{}.Kind():
		raw.CloseFiles()
		reply, err = c.b.ps()
	case ipc.ClientPortRequested{}.Kind():
		raw.CloseFiles()
		var req ipc.ClientPortRequested
		if err = raw.Decode(&req); err == nil {
			reply, err = c.b.ports(req)
		}
	case ipc.ClientExecRequested{}.Kind():
		var req ipc.ClientExecRequested
		if err = raw.Decode(&req); err != nil {
			raw.CloseFiles()
			break
		}
		// exec owns the connection from here on.
		c.b.exec(conn, &req, raw.Files)
		return
	default:
		raw.CloseFiles()
		err = fmt.Errorf("unknown request %q", raw.Type)
	}
	if err != nil {
		reply = ipc.FailedFrom("boot", err)
	}
	conn.SetDeadline(time.Now().Add(requestTimeout))
	_ = conn.Send(reply)
	conn.Close()
}

// startTimeout bounds start beyond the startContainer hooks' own timeouts.
const startTimeout = 30 * time.Second

// start releases init to execute the container process, then runs the
// poststart hooks.
func (b *boot) start() (ipc.Message, error) {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return nil, fmt.Errorf("container already started")
	}
	b.started = true
	b.mu.Unlock()
	p := b.init
	procutil.Trace("boot", "start requested")
	if err := p.conn.Send(ipc.BootStartRequested{}); err != nil {
		return nil, b.recvErr("starting", err)
	}
	p.conn.SetDeadline(time.Now().Add(startTimeout + hookBudget(b.plan.Spec, hooks.StartContainer)))
	err := b.awaitExec(p.conn, p.pid, specs.StateCreated)
	p.conn.Close()
	if err != nil {
		return nil, b.recvErr("starting", err)
	}
	// EOF: the socket closed on execve, the container process runs.
	procutil.Trace("boot", "container process executed")
	b.dropExe()
	procutil.FindStartupPages().DropAfter(procutil.IdleAfter) // boot is mostly idle from here
	var warnings []string
	st := hooks.State(b.args.ID, b.args.Bundle, p.pid, specs.StateRunning, b.plan.Spec)
	// Through the spawner: a hook gets nothing of boot's filter.
	for _, herr := range b.spawner.runHooks(b.plan.Spec, hooks.Poststart, st) {
		b.log.Warn("poststart hook failed", "error", herr)
		warnings = append(warnings, herr.Error())
	}
	return ipc.BootStarted{Warnings: warnings}, nil
}

// hookBudget is the sum of the timeouts of a hook list.
func hookBudget(s *specs.Spec, k hooks.Kind) time.Duration {
	var d time.Duration
	for _, h := range hooks.List(s, k) {
		if h.Timeout != nil {
			d += time.Duration(*h.Timeout) * time.Second
		} else {
			d += hooks.DefaultTimeout
		}
	}
	return d
}

// signal sends a signal to init, or with All to every container process.
func (b *boot) signal(req ipc.ClientSignalRequested) (ipc.Message, error) {
	sig := unix.Signal(req.Signal)
	if req.All {
		var err error
		if b.cg != nil {
			err = b.cg.Signal(sig)
		} else {
			err = b.signalAll(sig)
		}
		if err != nil {
			return nil, err
		}
		return ipc.BootSignalled{}, nil
	}
	if err := b.init.signal(sig); err != nil {
		if err == unix.ESRCH {
			return nil, state.ErrNotRunning
		}
		return nil, fmt.Errorf("signal %d: %w", req.Signal, err)
	}
	return ipc.BootSignalled{}, nil
}
