package network

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

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
//
// The flow table is bounded (maxUDPFlows): when it is full, a new flow
// evicts the one idle longest, as conntrack's early drop does, so a flood of
// flows costs at most maxUDPFlows flows' memory (a socket, a netstack
// endpoint with at most one queued datagram and 32 KiB more, two goroutines;
// no buffer while idle: datagram.go) and new flows keep working.

// maxUDPFlows bounds the container's UDP NAT flows (and each UDP port
// forward's clients).
var maxUDPFlows = 512 // a variable for tests

// udpFlow is one entry of the NAT flow table.
type udpFlow struct {
	pair *closers
	last atomic.Int64 // unix ns of the latest datagram either way
}

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
	out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(sb.hostTarget(dst, port)))
	if err != nil {
		return false
	}
	wq := new(waiter.Queue)
	ep, terr := r.CreateEndpoint(wq)
	if terr != nil {
		out.Close()
		return true
	}
	in := newStackDatagrams(ep, wq)
	f := &udpFlow{pair: &closers{in, out}}
	f.last.Store(time.Now().UnixNano())
	if !sb.addUDPFlow(f) {
		f.pair.Close()
		return true
	}
	if !sb.goTracked(func() {
		defer sb.removeUDPFlow(f)
		sb.relayUDP(f, in, out)
	}) {
		sb.removeUDPFlow(f)
		f.pair.Close()
	}
	return true
}

// addUDPFlow enters f in the table, evicting the flow idle longest when the
// table is full; false once closed.
func (sb *Sandbox) addUDPFlow(f *udpFlow) bool {
	var victim *udpFlow
	sb.mu.Lock()
	if sb.closed {
		sb.mu.Unlock()
		return false
	}
	if len(sb.udpFlows) >= maxUDPFlows {
		for g := range sb.udpFlows {
			if victim == nil || g.last.Load() < victim.last.Load() {
				victim = g
			}
		}
		delete(sb.udpFlows, victim)
	}
	sb.udpFlows[f] = struct{}{}
	sb.mu.Unlock()
	if victim != nil {
		sb.eg.logOnce("udp-table-full", "%d UDP flows open; new flows evict the one idle longest", maxUDPFlows)
		victim.pair.Close() // its relay ends
	}
	return true
}

func (sb *Sandbox) removeUDPFlow(f *udpFlow) {
	sb.mu.Lock()
	delete(sb.udpFlows, f)
	sb.mu.Unlock()
}

// relayUDP pumps datagrams between the container flow (in) and the host
// socket (out) until the flow is idle for UDPIdleTimeout, is evicted, or
// either side fails.
func (sb *Sandbox) relayUDP(f *udpFlow, in stackDatagrams, out *net.UDPConn) {
	if !sb.track(f.pair) {
		return
	}
	defer sb.untrack(f.pair)
	defer f.pair.Close()
	idle := sb.cfg.UDPIdleTimeout
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.pump(&f.last, idle, func(b []byte) error {
			if _, err := out.Write(b); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
			return nil
		})
		f.pair.Close()
	}()
	pumpHost(out, &f.last, idle, false, func(b []byte, _ netip.AddrPort, _ []byte) error { return in.write(b) })
	f.pair.Close()
	<-done
}

// isTimeout reports a deadline expiry (host sockets and gonet alike).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
