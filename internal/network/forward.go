package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Port forwards: a host socket per Forward, in the supervisor. Each accepted
// connection (or new UDP client) is dialed into the netstack to
// ContainerIP:ContainerPort. The container sees the client's own address
// when it is a non-loopback IPv4 address outside the sandbox subnet (the
// netstack may bind any address: spoofing), and the gateway otherwise
// (the container's kernel drops 127/8 sources arriving on tap0).

const forwardDialTimeout = 10 * time.Second

type forwardListener struct {
	fwd  Forward // as requested
	ln   net.Listener
	pc   *net.UDPConn
	once sync.Once

	mu    sync.Mutex
	flows map[netip.AddrPort]*fwdFlow // UDP only
}

func (f *forwardListener) close() {
	f.once.Do(func() {
		if f.ln != nil {
			f.ln.Close()
		}
		if f.pc != nil {
			f.pc.Close()
		}
	})
}

// local is the address the socket is bound to.
func (f *forwardListener) local() netip.AddrPort {
	var a net.Addr
	if f.ln != nil {
		a = f.ln.Addr()
	} else {
		a = f.pc.LocalAddr()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// bound is the forward with the port actually bound.
func (f *forwardListener) bound() Forward {
	b := f.fwd
	if ap := f.local(); ap.IsValid() {
		b.HostAddr = netip.AddrPortFrom(f.fwd.HostAddr.Addr(), ap.Port())
	}
	return b
}

// AddForward starts listening on fwd.HostAddr and forwarding to the
// container's fwd.ContainerPort: ListenForward, then AddForwardListener.
//
// Precondition: host network namespace (the listening socket is created in
// the calling thread's namespace), CAP_NET_BIND_SERVICE for ports below
// net.ipv4.ip_unprivileged_port_start.
func (sb *Sandbox) AddForward(fwd Forward) error {
	f, err := ListenForward(fwd)
	if err != nil {
		return err
	}
	return sb.AddForwardListener(fwd, f)
}

// ListenForward opens the host socket of a forward (bound, listening for
// TCP), for AddForwardListener, possibly in another process: the party that
// may bind the port (boot, which holds CAP_NET_BIND_SERVICE) opens it and
// donates it to the one that serves it (`moat net`, which holds nothing).
// A HostAddr port of 0 binds a free port. 0.0.0.0 means IPv4 only, [::]
// both families.
//
// Precondition: host network namespace; CAP_NET_BIND_SERVICE for ports
// below net.ipv4.ip_unprivileged_port_start.
func ListenForward(fwd Forward) (*os.File, error) {
	fwd = fwd.withDefaults()
	if fwd.ContainerPort == 0 || !fwd.HostAddr.Addr().IsValid() {
		return nil, fmt.Errorf("forward %v: host address and container port required", fwd)
	}
	family := "4"
	if fwd.HostAddr.Addr().Is6() {
		family = ""
	}
	var f *os.File
	switch fwd.Proto {
	case TCP:
		ln, err := net.Listen("tcp"+family, fwd.HostAddr.String())
		if err != nil {
			return nil, fmt.Errorf("forward %v: %w", fwd, err)
		}
		f, err = ln.(*net.TCPListener).File()
		ln.Close()
		if err != nil {
			return nil, fmt.Errorf("forward %v: %w", fwd, err)
		}
	case UDP:
		pc, err := net.ListenUDP("udp"+family, net.UDPAddrFromAddrPort(fwd.HostAddr))
		if err != nil {
			return nil, fmt.Errorf("forward %v: %w", fwd, err)
		}
		if fwd.HostAddr.Addr().IsUnspecified() {
			err = enablePktInfo(pc, fwd.HostAddr.Addr().Is6())
		}
		if err == nil {
			f, err = pc.File()
		}
		pc.Close()
		if err != nil {
			return nil, fmt.Errorf("forward %v: %w", fwd, err)
		}
	default:
		return nil, fmt.Errorf("forward %v: unknown protocol %q", fwd, fwd.Proto)
	}
	return f, nil
}

// AddForwardListener serves a forward on f, a socket from ListenForward for
// the same fwd. It takes ownership of f (closed on error too).
//
// Precondition: host network namespace (the connections into the netstack
// carry the clients' host addresses).
func (sb *Sandbox) AddForwardListener(fwd Forward, f *os.File) error {
	defer f.Close()
	fwd = fwd.withDefaults()
	if fwd.ContainerPort == 0 || !fwd.HostAddr.Addr().IsValid() {
		return fmt.Errorf("forward %v: host address and container port required", fwd)
	}
	fl := &forwardListener{fwd: fwd, flows: map[netip.AddrPort]*fwdFlow{}}
	switch fwd.Proto {
	case TCP:
		ln, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("forward %v: %w", fwd, err)
		}
		if fl.ln = ln; ln.Addr().Network() != "tcp" {
			ln.Close()
			return fmt.Errorf("forward %v: the socket is not a TCP listener", fwd)
		}
	case UDP:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return fmt.Errorf("forward %v: %w", fwd, err)
		}
		u, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return fmt.Errorf("forward %v: the socket is not UDP", fwd)
		}
		fl.pc = u
	default:
		return fmt.Errorf("forward %v: unknown protocol %q", fwd, fwd.Proto)
	}
	if a := fl.local(); a.Addr().Unmap() != fwd.HostAddr.Addr() || (fwd.HostAddr.Port() != 0 && a.Port() != fwd.HostAddr.Port()) {
		fl.close()
		return fmt.Errorf("forward %v: the socket is bound to %v", fwd, a)
	}
	bound := fl.bound()
	sb.mu.Lock()
	if sb.closed {
		sb.mu.Unlock()
		fl.close()
		return fmt.Errorf("forward %v: sandbox network closed", fwd)
	}
	if _, dup := sb.forwards[bound]; dup {
		sb.mu.Unlock()
		fl.close()
		return fmt.Errorf("forward %v: already published", bound)
	}
	sb.forwards[bound] = fl
	sb.mu.Unlock()
	serve := func() { sb.serveTCPForward(fl) }
	if fwd.Proto == UDP {
		serve = func() { sb.serveUDPForward(fl) }
	}
	if !sb.goTracked(serve) {
		fl.close()
	}
	return nil
}

// RemoveForward stops a forward (as listed by Forwards; equal to the one
// given to AddForward unless that asked for port 0).
// Connections already established through it stay up; its UDP flows end.
func (sb *Sandbox) RemoveForward(fwd Forward) error {
	fwd = fwd.withDefaults()
	sb.mu.Lock()
	fl, ok := sb.forwards[fwd]
	delete(sb.forwards, fwd)
	sb.mu.Unlock()
	if !ok {
		return fmt.Errorf("forward %v: not published", fwd)
	}
	fl.close()
	return nil
}

// Forwards lists the active forwards, sorted by host address and protocol.
func (sb *Sandbox) Forwards() []Forward {
	sb.mu.Lock()
	out := make([]Forward, 0, len(sb.forwards))
	for f := range sb.forwards {
		out = append(out, f)
	}
	sb.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].HostAddr.Compare(out[j].HostAddr); c != 0 {
			return c < 0
		}
		return out[i].Proto < out[j].Proto
	})
	return out
}

// sourceFor picks the address the container sees for a host client.
func (sb *Sandbox) sourceFor(client netip.AddrPort) tcpip.FullAddress {
	a := client.Addr().Unmap()
	if a.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !sb.cfg.Subnet.Contains(a) {
		return tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(a), Port: client.Port()}
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(sb.cfg.Gateway)}
}

func (sb *Sandbox) containerAddr(port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(sb.cfg.ContainerIP), Port: port}
}

func (sb *Sandbox) serveTCPForward(fl *forwardListener) {
	for backoff := time.Duration(0); ; {
		c, err := fl.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, or a connection reset before it was
			// accepted: the forward stays, and tries again.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			sb.eg.logOnce("accept "+fl.fwd.String(), "port forward %v: accept: %v (retrying)", fl.fwd, err)
			select {
			case <-sb.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		if !sb.goTracked(func() { sb.forwardTCPConn(fl, c.(*net.TCPConn)) }) {
			c.Close()
			return
		}
	}
}

func (sb *Sandbox) forwardTCPConn(fl *forwardListener, c *net.TCPConn) {
	client, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	ctx, cancel := context.WithTimeout(sb.ctx, forwardDialTimeout)
	in, ep, err := sb.dialStack(ctx, sb.sourceFor(client), sb.containerAddr(fl.fwd.ContainerPort))
	cancel()
	if err != nil {
		c.SetLinger(0) // RST: the container refused
		c.Close()
		return
	}
	big, release := sb.sizeConn(ep)
	defer release()
	sb.proxy(c, in, big)
}

// dialStack connects a netstack TCP endpoint from local to remote. When the
// exact local port cannot be bound (the previous connection from that client
// port lingers in TIME_WAIT), it retries with an ephemeral port.
func (sb *Sandbox) dialStack(ctx context.Context, local, remote tcpip.FullAddress) (*gonet.TCPConn, tcpip.Endpoint, error) {
	var wq waiter.Queue
	ep, terr := sb.s.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, nil, fmt.Errorf("netstack endpoint: %s", terr)
	}
	if terr = ep.Bind(local); terr != nil && local.Port != 0 {
		local.Port = 0
		terr = ep.Bind(local)
	}
	if terr != nil {
		ep.Close()
		return nil, nil, fmt.Errorf("bind %v: %s", local.Addr, terr)
	}
	entry, notify := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	terr = ep.Connect(remote)
	if _, started := terr.(*tcpip.ErrConnectStarted); started {
		select {
		case <-ctx.Done():
			ep.Close()
			return nil, nil, ctx.Err()
		case <-notify:
		}
		terr = ep.LastError()
	}
	if terr != nil {
		ep.Close()
		return nil, nil, fmt.Errorf("connect %v:%d: %s", remote.Addr, remote.Port, terr)
	}
	return gonet.NewTCPConn(&wq, ep), ep, nil
}

// fwdFlow is one UDP client of a UDP forward.
type fwdFlow struct {
	conn stackDatagrams
	oob  []byte // selects the reply's source address (unspecified listeners)
	last atomic.Int64
}

func (sb *Sandbox) serveUDPForward(fl *forwardListener) {
	defer fl.closeFlows()
	pumpHost(fl.pc, nil, 0, true, func(b []byte, client netip.AddrPort, oob []byte) error {
		f := fl.flow(client)
		if f == nil {
			if f = sb.newUDPForwardFlow(fl, client, replyOOB(oob)); f == nil {
				return nil
			}
		}
		f.last.Store(time.Now().UnixNano())
		f.conn.write(b)
		return nil
	})
}

func (fl *forwardListener) flow(client netip.AddrPort) *fwdFlow {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.flows[client]
}

func (fl *forwardListener) closeFlows() {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	for _, f := range fl.flows {
		f.conn.Close()
	}
}

// newUDPForwardFlow connects a netstack UDP endpoint for a new client and
// starts relaying the container's answers back to it.
func (sb *Sandbox) newUDPForwardFlow(fl *forwardListener, client netip.AddrPort, oob []byte) *fwdFlow {
	fl.mu.Lock()
	full := len(fl.flows) >= maxUDPFlows
	fl.mu.Unlock()
	if full {
		return nil
	}
	local, remote := sb.sourceFor(client), sb.containerAddr(fl.fwd.ContainerPort)
	c, err := sb.dialStackUDP(local, remote)
	if err != nil && local.Port != 0 {
		local.Port = 0
		c, err = sb.dialStackUDP(local, remote)
	}
	if err != nil {
		sb.cfg.Log("forward %v: client %v: %v", fl.fwd, client, err)
		return nil
	}
	f := &fwdFlow{conn: c, oob: oob}
	f.last.Store(time.Now().UnixNano())
	fl.mu.Lock()
	fl.flows[client] = f
	fl.mu.Unlock()
	if !sb.goTracked(func() { sb.relayUDPForward(fl, client, f) }) {
		c.Close()
		return nil
	}
	return f
}

func (sb *Sandbox) relayUDPForward(fl *forwardListener, client netip.AddrPort, f *fwdFlow) {
	defer func() {
		fl.mu.Lock()
		if fl.flows[client] == f {
			delete(fl.flows, client)
		}
		fl.mu.Unlock()
		f.conn.Close()
	}()
	if !sb.track(f.conn) {
		return
	}
	defer sb.untrack(f.conn)
	f.conn.pump(&f.last, sb.cfg.UDPIdleTimeout, func(b []byte) error {
		_, _, err := fl.pc.WriteMsgUDPAddrPort(b, f.oob, client)
		return err
	})
}

// dialStackUDP connects a netstack UDP endpoint from local to remote.
func (sb *Sandbox) dialStackUDP(local, remote tcpip.FullAddress) (stackDatagrams, error) {
	wq := new(waiter.Queue)
	ep, terr := sb.s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, wq)
	if terr != nil {
		return stackDatagrams{}, fmt.Errorf("netstack endpoint: %s", terr)
	}
	if terr = ep.Bind(local); terr != nil {
		ep.Close()
		return stackDatagrams{}, fmt.Errorf("bind %v:%d: %s", local.Addr, local.Port, terr)
	}
	if terr = ep.Connect(remote); terr != nil {
		ep.Close()
		return stackDatagrams{}, fmt.Errorf("connect %v:%d: %s", remote.Addr, remote.Port, terr)
	}
	return newStackDatagrams(ep, wq), nil
}
