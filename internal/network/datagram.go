package network

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Datagram pumps for UDP flows (NAT and port forwards) and DNS. A datagram
// may be 64 KiB, and a flow may sit idle for a minute: a pump waits for its
// socket to be readable holding no buffer, takes one from datagramBufs only
// to read and pass on one datagram, and arms no timer per datagram (the
// idle deadline is set once and pushed back only when it expires). So the
// memory of thousands of idle flows is their sockets and goroutines, and
// buffers in use are bounded by the datagrams being copied at once.

// maxDatagram is the largest UDP payload over IPv4 plus headroom.
const maxDatagram = 64 << 10

var datagramBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// stackDatagrams is a connected netstack UDP endpoint.
type stackDatagrams struct {
	ep   tcpip.Endpoint
	wq   *waiter.Queue
	conn *gonet.UDPConn // writes (it waits while the send buffer is full)
}

func newStackDatagrams(ep tcpip.Endpoint, wq *waiter.Queue) stackDatagrams {
	return stackDatagrams{ep: ep, wq: wq, conn: gonet.NewUDPConn(wq, ep)}
}

func (s stackDatagrams) Close() error { return s.conn.Close() }

func (s stackDatagrams) write(b []byte) error {
	_, err := s.conn.Write(b)
	return err
}

// pump passes each datagram the endpoint receives to deliver, until the
// endpoint closes, deliver fails, or (idle > 0) no datagram went either way
// for idle: last holds the time of the latest one, which the other
// direction updates too.
func (s stackDatagrams) pump(last *atomic.Int64, idle time.Duration, deliver func([]byte) error) {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	s.wq.EventRegister(&entry)
	defer s.wq.EventUnregister(&entry)
	var expired <-chan time.Time
	var timer *time.Timer
	if idle > 0 {
		timer = time.NewTimer(idle)
		defer timer.Stop()
		expired = timer.C
	}
	for {
		bp := datagramBufs.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, terr := s.ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			last.Store(time.Now().UnixNano())
			err := deliver((*bp)[:res.Count])
			datagramBufs.Put(bp)
			if err != nil {
				return
			}
			continue
		}
		datagramBufs.Put(bp)
		switch terr.(type) {
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrConnectionRefused:
			continue
		default:
			return // closed
		}
		select {
		case <-ready:
		case <-expired:
			rest := idle - time.Since(time.Unix(0, last.Load()))
			if rest <= 0 {
				return
			}
			timer.Reset(rest)
		}
	}
}

// pumpHost passes each datagram the host socket c receives to deliver,
// with its source and (withOOB) its control messages, until c closes,
// deliver fails, or (idle > 0) no datagram went either way for idle (as
// stackDatagrams.pump). An ICMP error queued on c (ECONNREFUSED) is
// skipped.
func pumpHost(c *net.UDPConn, last *atomic.Int64, idle time.Duration, withOOB bool,
	deliver func(b []byte, from netip.AddrPort, oob []byte) error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var oob []byte
	if withOOB {
		oob = make([]byte, 128)
	}
	if idle > 0 {
		c.SetReadDeadline(time.Now().Add(idle))
	}
	for {
		var bp *[]byte
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := datagramBufs.Get().(*[]byte)
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), *b, oob, unix.MSG_DONTWAIT)
			if errors.Is(rerr, unix.EAGAIN) {
				datagramBufs.Put(b)
				return false // wait until readable
			}
			bp = b
			return true
		})
		if err != nil {
			if idle > 0 && isTimeout(err) {
				if rest := idle - time.Since(time.Unix(0, last.Load())); rest > 0 {
					c.SetReadDeadline(time.Now().Add(rest))
					continue
				}
			}
			return // closed, or idle
		}
		if rerr != nil {
			datagramBufs.Put(bp)
			if errors.Is(rerr, unix.ECONNREFUSED) || errors.Is(rerr, unix.EINTR) {
				continue
			}
			return
		}
		if last != nil {
			last.Store(time.Now().UnixNano())
		}
		err = deliver((*bp)[:n], sockaddrAddrPort(from), oob[:oobn])
		datagramBufs.Put(bp)
		if err != nil {
			return
		}
	}
}

func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// SupervisorMemoryLimit is the soft memory limit (runtime/debug) of a
// process that runs a Sandbox. The network's own structures are bounded
// (flows, queries, connections); the limit makes the garbage collector
// return what a flood churned through instead of letting the heap double
// between collections: the peak stays near it (TestSandboxFloodMemory).
const SupervisorMemoryLimit = 64 << 20

// LimitSupervisorMemory sets SupervisorMemoryLimit unless GOMEMLIMIT chose
// a limit already.
func LimitSupervisorMemory() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(SupervisorMemoryLimit)
	}
}
