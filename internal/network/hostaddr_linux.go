package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// hostAddrs tells whether an address is one of the host's own: the kernel's
// answer to a route lookup (RTM_GETROUTE, as `ip route get` asks) is a
// local or broadcast route. Asked per new flow, so that an address added to
// the host later is as closed as those it had at start, with no cache to go
// stale; the lookup is one request and one reply on a netlink socket kept
// open (BenchmarkHostAddrCheck: a few microseconds, against the hundreds a
// proxied connection costs). Any interface counts, and so do local routes
// of whole ranges (`ip route add local 10.9.0.0/16 dev lo`).
//
// Precondition: runs in the supervisor, in the host network namespace (the
// socket answers for the namespace of the thread that opens it). No
// capability is needed.
type hostAddrs struct {
	mu     sync.Mutex
	nl     *rtnl // opened on first use, reopened after an error
	buf    []byte
	closed bool
}

// isHost reports whether a is an address of this host. An error means no
// answer: the caller denies.
func (h *hostAddrs) isHost(a netip.Addr) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, errors.New("closed")
	}
	if h.nl == nil {
		nl, err := openRtnl()
		if err != nil {
			return false, err
		}
		h.nl, h.buf = nl, make([]byte, 4096)
	}
	typ, err := h.routeType(a)
	if err != nil {
		h.nl.close()
		h.nl = nil
		return false, err
	}
	return typ == unix.RTN_LOCAL || typ == unix.RTN_BROADCAST, nil
}

func (h *hostAddrs) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.nl != nil {
		h.nl.close()
		h.nl = nil
	}
}

// routeType asks the kernel for the route to a and returns its type
// (RTN_*). No route at all (ENETUNREACH and kin) is RTN_UNREACHABLE: not
// local, and the dial will fail by itself.
func (h *hostAddrs) routeType(a netip.Addr) (uint8, error) {
	r := h.nl
	r.seq++
	family, bits := byte(unix.AF_INET), 32
	if !a.Is4() {
		family, bits = unix.AF_INET6, 128
	}
	body := make([]byte, unix.SizeofRtMsg, unix.SizeofRtMsg+4+16)
	body[0] = family
	body[1] = byte(bits) // rtm_dst_len
	body = nlAttr(body, unix.RTA_DST, a.AsSlice())
	msg := make([]byte, 0, unix.NLMSG_HDRLEN+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(unix.NLMSG_HDRLEN+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, unix.RTM_GETROUTE)
	msg = binary.NativeEndian.AppendUint16(msg, unix.NLM_F_REQUEST)
	msg = binary.NativeEndian.AppendUint32(msg, r.seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	// The runtime's preemption signals interrupt these raw calls: EINTR
	// is no answer, and no reason to deny.
	err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	for errors.Is(err, unix.EINTR) {
		err = unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}
	if err != nil {
		return 0, fmt.Errorf("route lookup %v: %w", a, err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, h.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("route lookup %v: %w", a, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(h.buf[:n])
		if err != nil {
			return 0, fmt.Errorf("route lookup %v: %w", a, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != r.seq {
				continue // a late answer to an earlier, failed request
			}
			switch m.Header.Type {
			case unix.RTM_NEWROUTE:
				if len(m.Data) < unix.SizeofRtMsg {
					return 0, fmt.Errorf("route lookup %v: short answer", a)
				}
				return m.Data[7], nil // rtm_type
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return 0, fmt.Errorf("route lookup %v: short error", a)
				}
				switch e := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data[:4]))); e {
				case unix.ENETUNREACH, unix.EHOSTUNREACH, unix.EACCES, unix.EINVAL:
					return unix.RTN_UNREACHABLE, nil
				default:
					return 0, fmt.Errorf("route lookup %v: %w", a, e)
				}
			}
		}
	}
}
