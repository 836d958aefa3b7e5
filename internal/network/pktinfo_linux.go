package network

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// A UDP forward listening on an unspecified address (0.0.0.0 or ::) must
// answer each client from the address the client sent to, or a client on a
// multi-homed host drops the reply (its connected socket expects that
// source). IP_PKTINFO / IPV6_RECVPKTINFO tell us that address per datagram,
// and the same control message on send selects it.

// enablePktInfo turns on destination-address reporting for pc.
func enablePktInfo(pc *net.UDPConn, v6 bool) error {
	rc, err := pc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// replyOOB turns the control messages of a received datagram into the control
// message that sends a reply from the address it was sent to (nil if none).
func replyOOB(oob []byte) []byte {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			var info unix.Inet4Pktinfo
			copy(info.Spec_dst[:], m.Data[8:12]) // ipi_addr: the header's destination
			return unix.PktInfo4(&info)
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			var info unix.Inet6Pktinfo
			copy(info.Addr[:], m.Data[:16])
			if a := netip.AddrFrom16(info.Addr); a.IsLinkLocalUnicast() {
				info.Ifindex = uint32(m.Data[16]) | uint32(m.Data[17])<<8 | uint32(m.Data[18])<<16 | uint32(m.Data[19])<<24
			}
			return unix.PktInfo6(&info)
		}
	}
	return nil
}
