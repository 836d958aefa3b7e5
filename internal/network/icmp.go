package network

import (
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// ICMP echo. Echo requests to the gateway are answered by the netstack
// itself. Echo requests to any other address come here:
//
//   - denied by the egress policy: answered with ICMP destination unreachable,
//     "communication administratively prohibited" (type 3 code 13);
//   - otherwise proxied through an unprivileged ICMP socket on the host
//     (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), which the kernel allows when
//     the supervisor's group is in net.ipv4.ping_group_range); the host's
//     reply is relayed back with its original identifier;
//   - if the host refuses the ICMP socket (the default range "1 0" allows
//     nobody), answered with "host unreachable" (type 3 code 1), and logged
//     once, so ping fails fast instead of hanging.
//
// Other ICMP messages from the container are dropped.

const (
	maxEchoInFlight = 64
	echoTimeout     = 5 * time.Second
)

type echoRequest struct {
	mac     tcpip.LinkAddress // container's MAC (to address replies)
	ipHdr   []byte            // original IPv4 header (for ICMP errors)
	icmp    []byte            // original ICMP header + data
	src     netip.Addr        // container
	dst     netip.Addr        // original destination
	id, seq uint16
}

// handleICMP is the netstack's default ICMPv4 handler (called synchronously
// in the packet path). It reports whether it consumed the packet.
//
// Precondition: supervisor, host network namespace.
func (sb *Sandbox) handleICMP(id stack.TransportEndpointID, pkt *stack.PacketBuffer) bool {
	h := header.ICMPv4(pkt.TransportHeader().Slice())
	if len(h) < header.ICMPv4MinimumSize || h.Type() != header.ICMPv4Echo {
		return false
	}
	dst := netipAddr(id.LocalAddress)
	if dst == sb.cfg.Gateway {
		return false // the netstack answers
	}
	if checksum.Checksum(h, pkt.Data().Checksum()) != 0xffff {
		return true
	}
	req := &echoRequest{
		ipHdr: append([]byte(nil), pkt.NetworkHeader().Slice()...),
		icmp:  append(append([]byte(nil), h...), pkt.Data().AsRange().ToSlice()...),
		src:   netipAddr(id.RemoteAddress),
		dst:   dst,
		id:    h.Ident(),
		seq:   h.Sequence(),
	}
	if eth := header.Ethernet(pkt.LinkHeader().Slice()); len(eth) >= header.EthernetMinimumSize {
		req.mac = eth.SourceAddress()
	}
	if !sb.eg.check("icmp", dst, 0) {
		sb.sendUnreachable(req, header.ICMPv4AdminProhibited)
		return true
	}
	if !sb.reserveEcho() {
		return true
	}
	if !sb.goTracked(func() {
		defer sb.releaseEcho()
		sb.proxyEcho(req)
	}) {
		sb.releaseEcho()
	}
	return true
}

func (sb *Sandbox) reserveEcho() bool {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.icmpBusy >= maxEchoInFlight {
		return false
	}
	sb.icmpBusy++
	return true
}

func (sb *Sandbox) releaseEcho() {
	sb.mu.Lock()
	sb.icmpBusy--
	sb.mu.Unlock()
}

// proxyEcho sends req from a host ICMP socket and relays the reply.
func (sb *Sandbox) proxyEcho(req *echoRequest) {
	conn, err := pingSocket()
	if err != nil {
		sb.eg.logOnce("icmp-socket", "cannot proxy ping (%v); answering host unreachable. "+
			"Allow it with sysctl net.ipv4.ping_group_range", err)
		sb.sendUnreachable(req, header.ICMPv4HostUnreachable)
		return
	}
	if !sb.track(conn) {
		return
	}
	defer sb.untrack(conn)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(echoTimeout))
	msg := append([]byte(nil), req.icmp...)
	msg[2], msg[3] = 0, 0 // the kernel sets the checksum and identifier
	if _, err := conn.WriteTo(msg, &net.UDPAddr{IP: req.dst.AsSlice()}); err != nil {
		return
	}
	buf := make([]byte, 65536)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		r := header.ICMPv4(buf[:n])
		if n >= header.ICMPv4MinimumSize && r.Type() == header.ICMPv4EchoReply && r.Sequence() == req.seq {
			sb.sendEchoReply(req, r[header.ICMPv4MinimumSize:])
			return
		}
	}
}

// pingSocket opens an unprivileged ICMP echo socket on the host.
func pingSocket() (net.PacketConn, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMP)
	if err != nil {
		return nil, os.NewSyscallError("socket(IPPROTO_ICMP)", err)
	}
	f := os.NewFile(uintptr(fd), "icmp")
	defer f.Close()
	return net.FilePacketConn(f)
}

// sendEchoReply injects an echo reply from req.dst to the container.
func (sb *Sandbox) sendEchoReply(req *echoRequest, data []byte) {
	icmp := make([]byte, header.ICMPv4MinimumSize+len(data))
	h := header.ICMPv4(icmp)
	h.SetType(header.ICMPv4EchoReply)
	h.SetIdent(req.id)
	h.SetSequence(req.seq)
	copy(icmp[header.ICMPv4MinimumSize:], data)
	h.SetChecksum(^checksum.Checksum(icmp, 0))
	sb.writeIPv4(req.mac, req.dst, req.src, icmp)
}

// sendUnreachable answers req with ICMP destination unreachable (code) from
// the gateway, quoting the original header and 8 bytes of its payload.
func (sb *Sandbox) sendUnreachable(req *echoRequest, code header.ICMPv4Code) {
	quote := append(append([]byte(nil), req.ipHdr...), req.icmp[:min(8, len(req.icmp))]...)
	icmp := make([]byte, header.ICMPv4MinimumSize+len(quote))
	h := header.ICMPv4(icmp)
	h.SetType(header.ICMPv4DstUnreachable)
	h.SetCode(code)
	copy(icmp[header.ICMPv4MinimumSize:], quote)
	h.SetChecksum(^checksum.Checksum(icmp, 0))
	sb.writeIPv4(req.mac, sb.cfg.Gateway, req.src, icmp)
}

// writeIPv4 sends an ICMP payload in an IPv4 packet from src to dst straight
// out of the NIC to the given MAC (src may be any address: spoofing).
func (sb *Sandbox) writeIPv4(mac tcpip.LinkAddress, src, dst netip.Addr, icmp []byte) {
	if mac == "" {
		return
	}
	pkt := make([]byte, header.IPv4MinimumSize+len(icmp))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)),
		ID:          uint16(time.Now().UnixNano()),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpipAddr(src),
		DstAddr:     tcpipAddr(dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], icmp)
	sb.s.WritePacketToRemote(nicID, mac, ipv4.ProtocolNumber, buffer.MakeWithData(pkt))
}
