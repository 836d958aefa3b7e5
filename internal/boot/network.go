package boot

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/ipc/netmsg"
	"github.com/moat-sandbox/moat/internal/network"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// netProc is `moat net`, the sandbox network's confined process, as boot
// sees it. Boot keeps what needs a privilege (creating the TAP in the
// container's namespace, binding published ports) and hands it over.
type netProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex // one request at a time on conn
	conn *ipc.Conn  // --net-sync-fd, boot's end
	done chan struct{}
	// status is how it ended, valid after done.
	status string
	// stopping: boot ends it (teardown); an exit is then no news.
	stopping atomic.Bool
}

const (
	// netStartTimeout bounds the net process's start-up, from the TAP
	// handed over to the network running.
	netStartTimeout = 30 * time.Second
	// netRequestTimeout bounds one `moat port` request to it.
	netRequestTimeout = 10 * time.Second
	// netStopTimeout bounds its exit once boot closed its end.
	netStopTimeout = 5 * time.Second
)

// planNetwork takes the sandbox network from the plan (the CLI decided it
// and matched the spec's namespaces to the mode) and parses its settings.
func (b *boot) planNetwork(cfg *config.Config) error {
	if b.plan.Network == nil {
		return nil
	}
	st, err := cfg.NetworkSettings()
	if err != nil {
		return err
	}
	st.Config.DNSServers = nil
	for _, s := range b.plan.Network.DNSServers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return fmt.Errorf("plan: dns server %q: %w", s, err)
		}
		st.Config.DNSServers = append(st.Config.DNSServers, ap)
	}
	b.netSettings = st
	return nil
}

// spawnNet starts `moat net` early, so that it confines itself while init
// starts up; it waits for its settings (startNetwork). It runs boot's own
// executable (it never enters the container) in a mount namespace of its
// own, which it empties, in the host's network namespace, where it dials
// out for the container.
func (b *boot) spawnNet() error {
	if b.netSettings == nil {
		return nil
	}
	netEnd, bootEnd, err := ipc.SocketPair("net-sync")
	if err != nil {
		return err
	}
	defer netEnd.Close()
	var d procutil.Donations
	d.Donate("net-sync-fd", netEnd)
	// Its log lines (egress denials) and a crash (a Go panic) land where
	// boot's go: the log, else boot's stderr (a foreground run's).
	logTo := b.args.LogFile
	if logTo == nil {
		logTo = os.Stderr
	}
	stdio := [3]*os.File{nil, nil, logTo}
	cmd := b.helperCmd(nil, stdio, nil, &d, "net")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS,
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL, // boot dies => the network dies
	}
	d.Log(b.log, "net")
	if err := spawnOnKeeperThread(cmd, nil, nil); err != nil {
		bootEnd.Close()
		return fmt.Errorf("start the sandbox network process: %w", err)
	}
	procutil.Trace("boot", "net spawned")
	n := &netProc{cmd: cmd, conn: ipc.NewConn(bootEnd), done: make(chan struct{})}
	b.net = n
	go n.wait(b)
	// Its buffers count against the container's memory (once the
	// container's cgroup exists).
	b.chargeHelper(cmd.Process.Pid)
	return nil
}

// wait reaps the net process; an exit boot did not ask for leaves the
// container without network, which boot reports and survives.
func (n *netProc) wait(b *boot) {
	err := n.cmd.Wait()
	switch ws, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus); {
	case ok && ws.Signal() == unix.SIGSYS:
		n.status = "killed by SIGSYS: a system call outside its seccomp allowlist"
	case ok && ws.Signaled():
		n.status = "killed by " + unix.SignalName(ws.Signal())
	case ok:
		n.status = "exit status " + strconv.Itoa(ws.ExitStatus())
	default:
		n.status = fmt.Sprint(err)
	}
	close(n.done)
	if !n.stopping.Load() {
		b.log.Warn("sandbox network: the net process exited (" + n.status + "); the container has no network from now on")
	}
}

// gone describes a net process that has exited, or is nil.
func (n *netProc) gone() error {
	select {
	case <-n.done:
		return fmt.Errorf("the sandbox network is gone: its process exited (%s)", n.status)
	default:
		return nil
	}
}

// startNetwork creates the TAP device in the container's network namespace,
// binds the published ports and hands both to the net process with its
// settings, then waits until the network runs. Boot creates the device
// itself, from a thread that joined init's namespace: it is outside the
// container's cgroup, whose device rules need not allow /dev/net/tun, and
// the TAP fd is never in a container process. Boot keeps no copy of it:
// when the net process dies, the TAP goes with it.
// Precondition: init is in its new network namespace (its pidfd pins it: a
// dead init makes setns fail, never lands in another process's namespace);
// spawnNet ran.
func (b *boot) startNetwork() error {
	if b.net == nil {
		return nil
	}
	mtu, addr, gw := b.netSettings.Config.TapAddressing()
	tap, err := network.CreateTapIn(b.init.pidfd, network.DefaultTapName, mtu, addr, gw)
	if err != nil {
		return fmt.Errorf("sandbox network: %w", err)
	}
	files := []*os.File{tap}
	defer func() { closeFiles(files) }()
	for _, f := range b.netSettings.Forwards {
		ln, err := network.ListenForward(f)
		if err != nil {
			return fmt.Errorf("publish %s: %w", f, err)
		}
		files = append(files, ln)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	n := b.net
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conn.SetDeadline(time.Now().Add(netStartTimeout))
	defer n.conn.SetDeadline(time.Time{})
	if err := n.conn.Send(netmsg.BootNetConfig{Settings: *b.netSettings}, fds...); err != nil {
		return fmt.Errorf("sandbox network: %w", n.failed(err))
	}
	closeFiles(files)
	files = nil
	var started netmsg.NetStarted
	got, err := n.conn.WaitFor(&started)
	closeFiles(got) // it sends none: never keep what it pushes
	if err != nil {
		return fmt.Errorf("sandbox network: %w", n.failed(err))
	}
	procutil.Trace("boot", "network started")
	return nil
}

// stopNetwork ends the net process: closing boot's end makes it close the
// network and exit; one that does not within netStopTimeout is killed.
func (b *boot) stopNetwork() {
	n := b.net
	if n == nil {
		return
	}
	n.stopping.Store(true)
	n.conn.Close()
	select {
	case <-n.done:
	case <-time.After(netStopTimeout):
		b.log.Warn("sandbox network: the net process did not exit; killing it")
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// ports serves `moat port`: add or remove a forward, or list them. Boot
// binds a new forward's socket (it may bind privileged ports) and hands it
// to the net process, which serves it.
func (b *boot) ports(req ipc.ClientPortRequested) (ipc.Message, error) {
	if b.net == nil {
		return nil, errors.New("the container has no sandbox network (--network=sandbox)")
	}
	msg := netmsg.BootNetPortRequested{Op: req.Op}
	var fds []int
	switch req.Op {
	case ipc.PortList:
	case ipc.PortAdd, ipc.PortRemove:
		f, err := network.ParsePublish(req.Publish)
		if err != nil {
			return nil, err
		}
		msg.Forward = f
		if req.Op == ipc.PortAdd {
			if err := b.net.gone(); err != nil {
				return nil, err
			}
			ln, err := network.ListenForward(f)
			if err != nil {
				return nil, err
			}
			defer ln.Close()
			fds = append(fds, int(ln.Fd()))
		}
	default:
		return nil, fmt.Errorf("unknown port operation %q", req.Op)
	}
	fwds, err := b.net.request(msg, fds)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(fwds))
	for _, f := range fwds {
		out = append(out, f.String())
	}
	return ipc.BootPorts{Forwards: out}, nil
}

// request sends one port request and returns the forwards in place after it.
func (n *netProc) request(msg netmsg.BootNetPortRequested, fds []int) ([]network.Forward, error) {
	if err := n.gone(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conn.SetDeadline(time.Now().Add(netRequestTimeout))
	defer n.conn.SetDeadline(time.Time{})
	if err := n.conn.Send(msg, fds...); err != nil {
		return nil, n.failed(err)
	}
	var reply netmsg.NetPorts
	got, err := n.conn.WaitFor(&reply)
	closeFiles(got) // it sends none: never keep what it pushes
	if err != nil {
		return nil, n.failed(err)
	}
	return reply.Forwards, nil
}

// failed describes a failed exchange with the net process: its own answer
// (ipc.RemoteError) as it is; otherwise, once it has been reaped (a moment
// after its end of the socket closed), how it ended.
func (n *netProc) failed(err error) error {
	var re *ipc.RemoteError
	if errors.As(err, &re) {
		return err
	}
	select {
	case <-n.done:
		return fmt.Errorf("the sandbox network is gone: its process exited (%s): %w", n.status, err)
	case <-time.After(2 * time.Second):
	}
	return fmt.Errorf("the net process: %w", err)
}
