package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/moat-sandbox/moat/internal/procutil"
)

const (
	nicID = tcpip.NICID(1)
	// gatewayMAC is the netstack's link address on the TAP (locally
	// administered, unicast).
	gatewayMAC = tcpip.LinkAddress("\x5a\x94\xef\xe4\x0c\xdd")

	tcpMaxInFlight = 512             // SYNs being dialed at once (>= 128, gvtv #676)
	timeWait       = time.Second     // research §3.3: 60 s collapses short connections
	closeTimeout   = 5 * time.Second // bound on Close
)

// Sandbox is a running user-mode network for one container.
//
// Precondition (every method): runs in the supervisor, in the host network
// namespace; outbound NAT, DNS forwarding and port-forward listeners all use
// the process's network namespace.
type Sandbox struct {
	cfg Config
	tap *os.File
	s   *stack.Stack
	eg  *egress
	dns *dnsServer

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine we start (entered under mu)

	mu       sync.Mutex
	closed   bool
	conns    map[io.Closer]struct{} // live proxied connections and flows
	forwards map[Forward]*forwardListener
	udpFlows map[*udpFlow]struct{} // the UDP NAT flow table (udpnat.go)
	icmpBusy int
	tcpConns atomic.Int32 // proxied TCP connections, bounded by maxTCPConns
	bigConns atomic.Int32 // connections holding a big slot (sizeConn)
}

// Start runs the gateway netstack on tapFD (a TAP fd from CreateTap, received
// from the container's namespace) and starts NAT, DNS and the ICMP echo
// proxy. Start takes ownership of tapFD: Close (or a failed Start) closes it.
//
// Precondition: runs in the supervisor, in the host network namespace.
func Start(tapFD *os.File, cfg Config) (*Sandbox, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		tapFD.Close()
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	sb := &Sandbox{
		cfg: cfg, tap: tapFD, eg: newEgress(&cfg),
		conns: map[io.Closer]struct{}{}, forwards: map[Forward]*forwardListener{},
		udpFlows: map[*udpFlow]struct{}{},
	}
	sb.ctx, sb.cancel = context.WithCancel(context.Background())
	s, err := sb.newStack()
	if err != nil {
		sb.cancel()
		tapFD.Close()
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	sb.s = s
	if sb.dns, err = sb.startDNS(); err != nil {
		sb.Close()
		return nil, fmt.Errorf("sandbox network: %w", err)
	}
	return sb, nil
}

func (sb *Sandbox) newStack() (*stack.Stack, error) {
	ep, err := fdbased.New(&fdbased.Options{
		FDs:                []int{int(sb.tap.Fd())},
		MTU:                uint32(sb.cfg.MTU),
		EthernetHeader:     true,
		Address:            gatewayMAC,
		RXChecksumOffload:  true, // frames come from the kernel; TX sums are computed
		PacketDispatchMode: fdbased.Readv,
		ClosedFunc: func(e tcpip.Error) {
			// Close stops the reader with an error ("endpoint is in
			// invalid state"): the end of every run, no warning.
			if e != nil && !sb.ctxDone() {
				sb.cfg.Log("tap closed: %v", e)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("tap endpoint: %w", err)
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
	})
	if err := setTCPOptions(s); err != nil {
		s.Destroy()
		return nil, err
	}
	tf := tcp.NewForwarder(s, 0, tcpMaxInFlight, sb.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, sb.handleUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)
	s.SetTransportProtocolHandler(icmp.ProtocolNumber4, sb.handleICMP)
	if err := sb.attachNIC(s, ep); err != nil {
		s.Destroy()
		return nil, err
	}
	return s, nil
}

func setTCPOptions(s *stack.Stack) error {
	sack := tcpip.TCPSACKEnabled(true)
	// Bounded per connection (tcpBufMax: see sizeConn).
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufMax, Max: tcpBufMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: tcpBufMax, Max: tcpBufMax}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	tw := tcpip.TCPTimeWaitTimeoutOption(timeWait)
	for _, o := range []tcpip.SettableTransportProtocolOption{&sack, &rcv, &snd, &mod, &tw} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("tcp option %T: %s", o, err)
		}
	}
	return nil
}

func (sb *Sandbox) attachNIC(s *stack.Stack, ep stack.LinkEndpoint) error {
	if err := s.CreateNIC(nicID, ep); err != nil {
		return fmt.Errorf("create nic: %s", err)
	}
	addr := tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpipAddr(sb.cfg.Gateway),
			PrefixLen: sb.cfg.Subnet.Bits(),
		},
	}
	if err := s.AddProtocolAddress(nicID, addr, stack.AddressProperties{}); err != nil {
		return fmt.Errorf("gateway address: %s", err)
	}
	// Spoofing lets us send from (and bind) any address: NAT replies come
	// from the original destination, forwards keep the client's address.
	// Promiscuous mode accepts packets to any destination.
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("spoofing: %s", err)
	}
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("promiscuous: %s", err)
	}
	subnet, err := tcpip.NewSubnet(tcpipAddr(sb.cfg.Subnet.Addr()), prefixMask(sb.cfg.Subnet))
	if err != nil {
		return fmt.Errorf("route: %w", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: nicID}})
	return nil
}

// Close tears the network down: forward listeners, DNS, every proxied
// connection and flow, the netstack, and the TAP fd. It is bounded: after
// closeTimeout it gives up waiting and returns an error. Safe to call twice.
func (sb *Sandbox) Close() error {
	sb.mu.Lock()
	if sb.closed {
		sb.mu.Unlock()
		return nil
	}
	sb.closed = true
	fwds := sb.forwards
	sb.forwards = map[Forward]*forwardListener{}
	conns := sb.conns
	sb.conns = map[io.Closer]struct{}{}
	sb.mu.Unlock()

	sb.cancel()
	for _, f := range fwds {
		f.close()
	}
	if sb.dns != nil {
		sb.dns.close()
	}
	for c := range conns {
		c.Close()
	}
	defer sb.eg.close()
	deadline := time.Now().Add(closeTimeout)
	var errs []error
	if !procutil.WaitTimeout(sb.wg.Wait, time.Until(deadline)) {
		errs = append(errs, errors.New("network goroutines did not stop"))
	}
	if sb.s != nil && !procutil.WaitTimeout(sb.s.Destroy, time.Until(deadline)) {
		// The TAP fd stays open: a dispatcher may still be reading it.
		return fmt.Errorf("close sandbox network: netstack did not stop within %v", closeTimeout)
	}
	if err := sb.tap.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("close sandbox network: %w", errors.Join(errs...))
	}
	return nil
}

// ctxDone reports whether Close began.
func (sb *Sandbox) ctxDone() bool { return sb.ctx.Err() != nil }

// enter registers a goroutine about to start; false once Close began.
func (sb *Sandbox) enter() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return false
	}
	sb.wg.Add(1)
	return true
}

// goTracked starts f as a tracked goroutine; false (f not run) once closed.
func (sb *Sandbox) goTracked(f func()) bool {
	if !sb.enter() {
		return false
	}
	go func() {
		defer sb.wg.Done()
		f()
	}()
	return true
}

// track registers c to be closed by Close; false (and c closed) once closed.
func (sb *Sandbox) track(c io.Closer) bool {
	sb.mu.Lock()
	if sb.closed {
		sb.mu.Unlock()
		c.Close()
		return false
	}
	sb.conns[c] = struct{}{}
	sb.mu.Unlock()
	return true
}

func (sb *Sandbox) untrack(c io.Closer) {
	sb.mu.Lock()
	delete(sb.conns, c)
	sb.mu.Unlock()
}

// closers closes several things as one io.Closer.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func tcpipAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.Unmap().AsSlice()) }

func netipAddr(a tcpip.Address) netip.Addr {
	na, _ := netip.AddrFromSlice(a.AsSlice())
	return na.Unmap()
}

func prefixMask(p netip.Prefix) tcpip.AddressMask {
	m := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return tcpip.MaskFromBytes(m)
}
