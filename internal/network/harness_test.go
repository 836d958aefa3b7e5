package network

// Test harness. Every network test runs inside namespaces the test creates:
//
//   - TestMain re-execs the test binary in a new network namespace, "hostsim",
//     with lo up and two TEST-NET addresses on lo (198.51.100.1-2): the
//     host's own addresses. The tests and the Sandbox (the supervisor side)
//     run there, so NAT, DNS forwarding and forwards only ever reach hostsim
//     or the remote namespace.
//   - hostsim starts one more namespace, "remote" (a holder process): a
//     remote host at 192.0.2.2 (and 203.0.113.1 on its lo) behind a veth
//     pair (hostsim's end 192.0.2.1, MTU 65520, as the TAP). The container's
//     outbound traffic goes there: the host's own addresses are closed to it
//     without AllowHostLoopback. Its servers are Go listeners made from a
//     thread that joined it (remote.in), or processes started there.
//   - Each container is a further re-exec of the binary with CLONE_NEWNET
//     (role roleContainer, through internal/testutil/reexec): it runs CreateTap and sends the TAP fd back over a
//     SOCK_SEQPACKET socketpair, then waits for EOF. The test calls Start on
//     that fd. Client and server roles inside the container run as Go code on
//     a goroutine locked to an OS thread that joined the container's network
//     namespace (setns); the sockets it creates live there.
//
// Without root (or when unshare is refused) the network tests skip.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// The roles of the re-executed test binary (internal/testutil/reexec).
const (
	roleHostsim   = "net-hostsim"   // the test run itself, in the hostsim namespace
	roleRemote    = "net-remote"    // holds the remote namespace until stdin closes
	roleContainer = "net-container" // a container's network namespace: makes the TAP
	roleNoTun     = "net-notun"     // a namespace without a usable /dev/net/tun
)

var (
	inHostsim bool // set in the hostsim child

	hostA   = netip.MustParseAddr("198.51.100.1") // on hostsim lo: the host's own
	hostB   = netip.MustParseAddr("198.51.100.2") // on hostsim lo (a non-loopback client of forwards)
	loopAdr = netip.MustParseAddr("127.0.0.1")

	hostVeth = netip.MustParseAddr("192.0.2.1")   // hostsim's end of the veth to remote
	remoteA  = netip.MustParseAddr("192.0.2.2")   // remote's end of the veth
	remoteC  = netip.MustParseAddr("203.0.113.1") // on remote's lo, routed through remoteA

	remote *ctr // the remote namespace (only its ns is set)
)

func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{
		roleContainer: func(string) int { return containerChild() },
		roleNoTun:     func(string) int { return noTunChild() },
		roleRemote: func(string) int {
			var b [1]byte
			os.Stdin.Read(b[:]) // returns at EOF: hostsim is done with us
			return 0
		},
	})
	if role, _ := reexec.Role(); role == roleHostsim {
		if err := setupHostsim(); err != nil {
			fmt.Fprintln(os.Stderr, "hostsim setup:", err)
			os.Exit(1)
		}
		stop, err := startRemote()
		if err != nil {
			fmt.Fprintln(os.Stderr, "remote namespace setup:", err)
			os.Exit(1)
		}
		inHostsim = true
		LimitSupervisorMemory() // as boot: benchmarks run under the same limit
		code := m.Run()
		stop()
		os.Exit(code)
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	// The whole run, again, in hostsim ("-test.run=" runs every test unless
	// the run's own flags, which follow, say otherwise).
	cmd := reexec.Command(context.Background(), roleHostsim, "", append([]string{"-test.run="}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the hostsim network namespace, network tests skip:", err)
		os.Exit(m.Run())
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		os.Exit(max(ee.ExitCode(), 1))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// setupHostsim runs in the fresh hostsim namespace.
func setupHostsim() error {
	nl, err := openRtnl()
	if err != nil {
		return err
	}
	defer nl.close()
	if err := loUp(nl); err != nil {
		return err
	}
	idx, err := ifIndex("lo")
	if err != nil {
		return err
	}
	for _, a := range []netip.Addr{hostA, hostB} {
		if err := nl.addAddr(idx, netip.PrefixFrom(a, 32)); err != nil {
			return err
		}
	}
	return nil
}

// startRemote starts the remote namespace's holder and wires it to hostsim
// with a veth pair (iproute2's ip). stop ends the holder.
func startRemote() (stop func(), err error) {
	cmd := reexec.Command(context.Background(), roleRemote, "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
	hold, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() { hold.Close(); cmd.Wait() }
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		stop()
		return nil, err
	}
	remote = &ctr{ns: ns}
	pid := fmt.Sprint(cmd.Process.Pid)
	host := [][]string{
		{"link", "add", "rmt0", "mtu", "65520", "type", "veth", "peer", "name", "eth0", "mtu", "65520", "netns", pid},
		{"addr", "add", hostVeth.String() + "/24", "dev", "rmt0"},
		{"link", "set", "rmt0", "up"},
		{"route", "add", remoteC.String() + "/32", "via", remoteA.String()},
	}
	inRemote := [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", remoteA.String() + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"addr", "add", remoteC.String() + "/32", "dev", "lo"},
		{"route", "add", "default", "via", hostVeth.String()},
	}
	ipCmd := func(args []string) error {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %w: %s", args, err, out)
		}
		return nil
	}
	for _, a := range host {
		if err := ipCmd(a); err != nil {
			stop()
			return nil, err
		}
	}
	for _, a := range inRemote {
		if err := remote.in(func() error { return ipCmd(a) }); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

func needHostsim(t testing.TB) {
	t.Helper()
	if !inHostsim {
		t.Skip("needs root (network namespaces)")
	}
}

// containerChild: runs in the container's fresh network namespace. fd 3 is
// the SEQPACKET socket to the test.
func containerChild() int {
	const sock = 3
	tap, err := CreateTap(DefaultTapName, DefaultMTU, netip.PrefixFrom(DefaultContainerIP, 24), DefaultGateway)
	if err != nil {
		unix.Sendmsg(sock, []byte("ERR "+err.Error()), nil, nil, 0)
		return 1
	}
	if err := unix.Sendmsg(sock, []byte("tap"), unix.UnixRights(int(tap.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "send tap:", err)
		return 1
	}
	tap.Close()
	var b [16]byte
	unix.Read(sock, b[:]) // returns at EOF: the test is done with us
	return 0
}

// noTunChild: in a private mount namespace, hides /dev/net and tries
// CreateTap; prints the error.
func noTunChild() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Println("SETUP", err)
		return 1
	}
	if err := unix.Mount("tmpfs", "/dev/net", "tmpfs", 0, "size=4k"); err != nil {
		fmt.Println("SETUP", err)
		return 1
	}
	_, err := CreateTap(DefaultTapName, DefaultMTU, netip.PrefixFrom(DefaultContainerIP, 24), DefaultGateway)
	fmt.Printf("unusable=%v err=%v\n", errors.Is(err, ErrTunUnusable), err)
	return 0
}

// ctr is a test container: its network namespace and the Sandbox serving it.
type ctr struct {
	sb   *Sandbox
	ns   *os.File
	cmd  *exec.Cmd
	sock *os.File
	logs *logSink
}

type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

// newCtr starts a container child, receives its TAP fd and calls Start.
// Cleanup closes everything (bounded).
func newCtr(t testing.TB, cfg Config) *ctr {
	t.Helper()
	needHostsim(t)
	c, tap := spawnCtr(t)
	c.logs = &logSink{}
	if cfg.Log == nil {
		cfg.Log = c.logs.logf
	}
	sb, err := Start(tap, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	c.sb = sb
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// spawnCtr starts the container child and returns the TAP fd it sent.
func spawnCtr(t testing.TB) (*ctr, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "ctl"), os.NewFile(uintptr(fds[1]), "ctl-child")
	var stderr bytes.Buffer
	cmd := reexec.Command(context.Background(), roleContainer, "")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start container child: %v", err)
	}
	theirs.Close()
	c := &ctr{cmd: cmd, sock: mine}
	t.Cleanup(func() {
		c.sock.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if c.ns != nil {
			c.ns.Close()
		}
	})
	tap, err := recvTap(mine)
	if err != nil {
		t.Fatalf("receive tap: %v (child stderr: %s)", err, stderr.String())
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		tap.Close()
		t.Fatal(err)
	}
	c.ns = ns
	return c, tap
}

func recvTap(sock *os.File) (*os.File, error) {
	fd := int(sock.Fd())
	tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if msg := string(buf[:n]); msg != "tap" {
		return nil, errors.New(msg)
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(cmsgs) != 1 {
		return nil, fmt.Errorf("no rights: %v", err)
	}
	fds, err := unix.ParseUnixRights(&cmsgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("bad rights: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "tap"), nil
}

// in runs f on an OS thread that joined the container's network namespace;
// sockets f creates belong to that namespace. The thread is discarded after.
func (c *ctr) in(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := unix.Setns(int(c.ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// dial connects from inside the container.
func (c *ctr) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := c.in(func() error {
		var err error
		conn, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return conn, err
}

// listen listens inside the container.
func (c *ctr) listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := c.in(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// listenPacket opens a UDP or raw socket inside the container.
func (c *ctr) listenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := c.in(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// forwardPort returns the host port bound for the forward to ctrPort.
func (c *ctr) forwardPort(t testing.TB, proto Proto, ctrPort uint16) uint16 {
	t.Helper()
	for _, f := range c.sb.Forwards() {
		if f.Proto == proto && f.ContainerPort == ctrPort {
			return f.HostAddr.Port()
		}
	}
	t.Fatalf("no %s forward to %d in %v", proto, ctrPort, c.sb.Forwards())
	return 0
}

// hostListen listens in hostsim (the "host").
func hostListen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// remoteListen listens in the remote namespace (a remote server).
func remoteListen(t testing.TB, addr string) net.Listener {
	t.Helper()
	needHostsim(t)
	return remote.listen(t, addr)
}

// serve runs handle for every connection of ln until ln closes, each
// connection bounded to 30 s.
func serve(ln net.Listener, handle func(net.Conn)) { serveFor(ln, 30*time.Second, handle) }

// serveFor is serve with another bound on each connection (0: none, for
// long benchmark transfers).
func serveFor(ln net.Listener, limit time.Duration, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if limit > 0 {
					c.SetDeadline(time.Now().Add(limit))
				}
				handle(c)
			}()
		}
	}()
}

// echoOne echoes one byte and closes (the short-connection server).
func echoOne(c net.Conn) {
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		c.Write(b[:])
	}
}

func portOf(a net.Addr) uint16 {
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Port()
}

func addrPort(a netip.Addr, port uint16) string { return netip.AddrPortFrom(a, port).String() }

// TestCloseNotLogged: Close, the end of every run, stops netstack's TAP
// reader with an error; that is no warning.
func TestCloseNotLogged(t *testing.T) {
	c := newCtr(t, Config{})
	if err := c.sb.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(c.logs.lines); n != 0 {
		t.Errorf("Close logged %d lines: %q", n, c.logs.lines)
	}
}
