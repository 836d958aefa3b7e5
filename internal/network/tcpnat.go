package network

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Outbound TCP NAT: the container's SYN to any address reaches handleTCP
// (through tcp.Forwarder, at most tcpMaxInFlight at once). We check the egress
// policy, dial the destination from the host, and only then complete the
// container's handshake, so a refused or failed dial is an immediate RST
// (ECONNREFUSED in the container) rather than a connection that opens and
// closes.

// hostTarget maps a container-side destination to the host address to dial:
// the gateway is the host's loopback (the policy already required
// AllowHostLoopback for it).
func (sb *Sandbox) hostTarget(dst netip.Addr, port uint16) netip.AddrPort {
	if dst == sb.cfg.Gateway {
		dst = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return netip.AddrPortFrom(dst, port)
}

// maxTCPConns bounds the container's proxied TCP connections.
var maxTCPConns int32 = 4096 // a variable for tests

// The memory of proxied TCP connections (issue 17): the netstack buffers
// up to tcpBufMax per direction of a connection that the far side does not
// drain, and a fast copy holds 3 x 256 KiB per direction (copyPipelined).
// Only bigConnSlots connections at a time get those; the others are
// small: their netstack buffers are pinned to smallConnBuf per direction
// and they copy through 16 KiB. A flood of stalled connections from the
// container then holds at most
//
//	bigConnSlots x 2 x (tcpBufMax + 768 KiB)            = 112 MiB
//	(maxTCPConns - bigConnSlots) x 2 x (smallConnBuf + 16 KiB) = 381 MiB
//
// in the net process, instead of 2 x 8.75 MiB per connection.
const (
	tcpBufMax    = 1 << 20 // also the initial size (as before the bound)
	smallConnBuf = 32 << 10
)

var bigConnSlots int32 = 32 // a variable for tests

// sizeConn decides whether a new connection is big (it may grow its
// buffers to tcpBufMax and copy with large buffers) or small; release
// frees its slot when it ends.
func (sb *Sandbox) sizeConn(ep tcpip.Endpoint) (big bool, release func()) {
	if sb.bigConns.Add(1) <= bigConnSlots {
		return true, func() { sb.bigConns.Add(-1) }
	}
	sb.bigConns.Add(-1)
	so := ep.SocketOptions()
	so.SetReceiveBufferSize(smallConnBuf, true)
	so.SetSendBufferSize(smallConnBuf, true)
	return false, func() {}
}

// handleTCP runs in its own goroutine, one per in-flight SYN, and proxies
// the connection it accepts until it ends.
//
// Precondition: supervisor, host network namespace (it dials host sockets).
func (sb *Sandbox) handleTCP(r *tcp.ForwarderRequest) {
	if !sb.enter() {
		r.Complete(true)
		return
	}
	defer sb.wg.Done()
	id := r.ID()
	dst, port := netipAddr(id.LocalAddress), id.LocalPort
	if !sb.eg.check("tcp", dst, port) {
		r.Complete(true)
		return
	}
	// Established connections are bounded too (the forwarder bounds only
	// SYNs being dialed): each holds a host socket, goroutines and buffers
	// in the supervisor, outside the container's cgroup.
	if sb.tcpConns.Add(1) > maxTCPConns {
		sb.tcpConns.Add(-1)
		sb.eg.logOnce("tcp-table-full", "%d TCP connections open; refusing new ones", maxTCPConns)
		r.Complete(true)
		return
	}
	defer sb.tcpConns.Add(-1)
	ctx, cancel := context.WithTimeout(sb.ctx, sb.cfg.DialTimeout)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", sb.hostTarget(dst, port).String())
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			sb.cfg.Log("tcp %v:%d: dial timed out after %v", dst, port, sb.cfg.DialTimeout)
		}
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		c.Close()
		return
	}
	r.Complete(false)
	big, release := sb.sizeConn(ep)
	defer release()
	sb.proxy(gonet.NewTCPConn(&wq, ep), c.(*net.TCPConn), big)
}

// halfConn is a stream that can be half-closed (net.TCPConn, gonet.TCPConn).
type halfConn interface {
	net.Conn
	CloseWrite() error
}

// proxy copies both ways until both directions end, propagating EOF as a
// half-close (CloseWrite) so the side that closed first stays the active
// closer. An error in either direction aborts both. It returns when done;
// Close interrupts it.
func (sb *Sandbox) proxy(a, b halfConn, big bool) {
	pair := &closers{a, b}
	if !sb.track(pair) {
		return
	}
	defer sb.untrack(pair)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		copyHalf(b, a, big)
	}()
	copyHalf(a, b, big)
	wg.Wait()
	pair.Close()
}

func copyHalf(dst, src halfConn, big bool) {
	if err := copyAdaptive(dst, src, big); err != nil {
		src.Close()
		dst.Close()
		return
	}
	dst.CloseWrite()
}

const (
	smallCopyBuf = 16 << 10
	largeCopyBuf = 256 << 10 // rootlesskit PR #630: large buffers double throughput
)

var largeBufs = sync.Pool{New: func() any { b := make([]byte, largeCopyBuf); return &b }}

// copyAdaptive copies src to dst until EOF (nil) or an error. It starts with
// a small buffer, so idle connections stay cheap; once a read fills it, the
// copy becomes a two-stage pipeline (a reader goroutine and this writer)
// over pooled 256 KiB buffers, so reading one side and writing the other
// overlap on different CPUs. Only a big connection (sizeConn) does.
func copyAdaptive(dst io.Writer, src io.Reader, big bool) error {
	buf := make([]byte, smallCopyBuf)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if n == len(buf) && big {
				return copyPipelined(dst, src)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

type chunk struct {
	b   *[]byte
	n   int
	err error
}

const pipelineDepth = 3

func copyPipelined(dst io.Writer, src io.Reader) error {
	full := make(chan chunk, pipelineDepth)
	free := make(chan *[]byte, pipelineDepth)
	for i := 0; i < pipelineDepth; i++ {
		free <- largeBufs.Get().(*[]byte)
	}
	stop := make(chan struct{})
	go func() {
		defer close(full)
		for {
			var b *[]byte
			select {
			case b = <-free:
			case <-stop:
				return
			}
			n, err := src.Read(*b)
			full <- chunk{b, n, err}
			if err != nil {
				return
			}
		}
	}()
	var result error
	for c := range full {
		if c.n > 0 && result == nil {
			if _, werr := dst.Write((*c.b)[:c.n]); werr != nil {
				result = werr
				close(stop)
				if cl, ok := src.(io.Closer); ok {
					cl.Close() // unblock the reader; the copy is aborted anyway
				}
			}
		}
		if c.err != nil && result == nil && !errors.Is(c.err, io.EOF) {
			result = c.err
		}
		free <- c.b
	}
	for i := 0; i < pipelineDepth; i++ {
		largeBufs.Put(<-free)
	}
	return result
}
