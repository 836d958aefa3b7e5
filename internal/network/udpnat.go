package network

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Outbound UDP NAT. The first datagram of a container flow (4-tuple) that no
// netstack endpoint claims reaches handleUDP. We check the egress policy
// (denied: returning false makes the netstack answer ICMP port unreachable),
// open a connected host UDP socket to the destination, and register a
// netstack endpoint for the 4-tuple, so later datagrams of the flow bypass
// the forwarder. The flow ends after UDPIdleTimeout with no traffic either
// way.

const (
	maxUDPFlows = 4096
	udpBufSize  = 64 << 10
)

// handleUDP runs synchronously in the netstack's packet path; it must not
// block (dialing a UDP socket does not touch the network).
//
// Precondition: supervisor, host network namespace.
func (sb *Sandbox) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, port := netipAddr(id.LocalAddress), id.LocalPort
	if !sb.eg.check("udp", dst, port) {
		return false
	}
	if !sb.reserveUDPFlow() {
		return true // dropped: table full (logged) or closing
	}
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(sb.hostTarget(dst, port)))
	if err != nil {
		sb.releaseUDPFlow()
		return false
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		out.Close()
		sb.releaseUDPFlow()
		return true
	}
	in := gonet.NewUDPConn(&wq, ep)
	if !sb.goTracked(func() {
		defer sb.releaseUDPFlow()
		sb.relayUDP(in, out)
	}) {
		in.Close()
		out.Close()
		sb.releaseUDPFlow()
	}
	return true
}

func (sb *Sandbox) reserveUDPFlow() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return false
	}
	if sb.udpFlows >= maxUDPFlows {
		if sb.udpFlows == maxUDPFlows {
			sb.cfg.Log("%d UDP flows open; dropping new flows", maxUDPFlows)
			sb.udpFlows++ // log once until the table drains
		}
		return false
	}
	sb.udpFlows++
	return true
}

func (sb *Sandbox) releaseUDPFlow() {
	sb.mu.Lock()
	if sb.udpFlows > maxUDPFlows {
		sb.udpFlows = maxUDPFlows
	}
	sb.udpFlows--
	sb.mu.Unlock()
}

// relayUDP pumps datagrams between the container flow (in) and the host
// socket (out) until the flow is idle for UDPIdleTimeout or either side fails.
func (sb *Sandbox) relayUDP(in *gonet.UDPConn, out *net.UDPConn) {
	pair := &closers{in, out}
	if !sb.track(pair) {
		return
	}
	defer sb.untrack(pair)
	defer pair.Close()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pumpDatagrams(in, out, &last, sb.cfg.UDPIdleTimeout)
		pair.Close()
	}()
	pumpDatagrams(out, in, &last, sb.cfg.UDPIdleTimeout)
	pair.Close()
	<-done
}

// datagramConn is the subset of net.Conn used by pumpDatagrams.
type datagramConn interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	SetReadDeadline(time.Time) error
}

// pumpDatagrams copies datagrams from src to dst. last holds the time of the
// latest datagram in either direction; the pump stops once that is older than
// idle, or on any error other than a deadline or an ICMP-induced refusal.
func pumpDatagrams(src, dst datagramConn, last *atomic.Int64, idle time.Duration) {
	buf := make([]byte, udpBufSize)
	for {
		src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		n, err := src.Read(buf)
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		last.Store(time.Now().UnixNano())
		if _, err := dst.Write(buf[:n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
	}
}

// isTimeout reports a deadline expiry (host sockets and gonet alike).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
