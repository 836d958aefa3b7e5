package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// DNS on gateway:53, UDP and TCP. Queries are forwarded as raw messages to
// the host's resolvers, in order, and the first answer is relayed unchanged
// (AAAA, TTLs, EDNS, DNSSEC records and truncation survive; a truncated UDP
// answer makes the client retry over TCP, which we serve too). When the
// egress rules close the gateway's port 53 (Policy), every query gets
// REFUSED. With a domain allowlist, queries for other names get REFUSED, and the A/AAAA answers for
// allowed names feed the egress allowlist. When every resolver fails the
// client gets SERVFAIL.

const (
	dnsPerServerTimeout = 2 * time.Second
	dnsTotalTimeout     = 5 * time.Second
	dnsTCPIdle          = 30 * time.Second
	dnsMaxQueries       = 128 // concurrent UDP queries
	dnsMaxTCPConns      = 64
)

type dnsServer struct {
	sb      *Sandbox
	udp     *gonet.UDPConn
	tcp     *gonet.TCPListener
	queries chan struct{} // semaphore: UDP queries in flight
	tcpSem  chan struct{} // semaphore: TCP connections
}

// startDNS binds gateway:53 in the netstack and starts serving.
//
// Precondition: supervisor, host network namespace (upstream sockets).
func (sb *Sandbox) startDNS() (*dnsServer, error) {
	addr := tcpip.FullAddress{NIC: nicID, Addr: tcpipAddr(sb.cfg.Gateway), Port: 53}
	u, err := gonet.DialUDP(sb.s, &addr, nil, ipv4.ProtocolNumber)
	if err != nil {
		return nil, fmt.Errorf("dns: udp %v:53: %w", sb.cfg.Gateway, err)
	}
	t, err := gonet.ListenTCP(sb.s, addr, ipv4.ProtocolNumber)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("dns: tcp %v:53: %w", sb.cfg.Gateway, err)
	}
	d := &dnsServer{sb: sb, udp: u, tcp: t,
		queries: make(chan struct{}, dnsMaxQueries), tcpSem: make(chan struct{}, dnsMaxTCPConns)}
	if !sb.goTracked(d.serveUDP) || !sb.goTracked(d.serveTCP) {
		d.close()
		return nil, fmt.Errorf("dns: sandbox closed")
	}
	return d, nil
}

func (d *dnsServer) close() {
	d.udp.Close()
	d.tcp.Close()
}

func (d *dnsServer) serveUDP() {
	buf := make([]byte, 65535)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case d.queries <- struct{}{}:
		default:
			continue // overloaded: drop, the client retries
		}
		q := append([]byte(nil), buf[:n]...)
		if !d.sb.goTracked(func() {
			defer func() { <-d.queries }()
			if resp := d.resolve(q, false); resp != nil {
				d.udp.WriteTo(resp, from)
			}
		}) {
			<-d.queries
			return
		}
	}
}

func (d *dnsServer) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		select {
		case d.tcpSem <- struct{}{}:
		default:
			c.Close()
			continue
		}
		if !d.sb.track(c) || !d.sb.goTracked(func() {
			defer func() { <-d.tcpSem }()
			defer d.sb.untrack(c)
			defer c.Close()
			d.serveTCPConn(c)
		}) {
			c.Close()
			<-d.tcpSem
			return
		}
	}
}

// serveTCPConn answers length-framed queries (RFC 1035 §4.2.2) in order.
func (d *dnsServer) serveTCPConn(c net.Conn) {
	var lb [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(lb[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp := d.resolve(q, true)
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		c.SetWriteDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// resolve answers one query: REFUSED for disallowed names, else the first
// upstream answer, else SERVFAIL. Nil means "send nothing".
func (d *dnsServer) resolve(q []byte, overTCP bool) []byte {
	if len(q) < dnsHeaderLen || q[2]&0x80 != 0 {
		return nil // too short, or a response
	}
	eg := d.sb.eg
	if !eg.dnsOpen {
		eg.logOnce("dns closed", "dns queries refused (%s)", eg.dnsWhy)
		return errorReply(q, rcodeRefused)
	}
	if eg.learning() {
		qs, n, err := parseQuestion(q)
		if err != nil || n != 1 {
			return errorReply(q, rcodeFormErr)
		}
		if !eg.nameAllowed(qs.name) {
			eg.logOnce("dns "+qs.name, "dns query for %q refused (not in --egress-domain)", qs.name)
			return errorReply(q, rcodeRefused)
		}
	}
	ctx, cancel := context.WithTimeout(d.sb.ctx, dnsTotalTimeout)
	defer cancel()
	for _, srv := range d.sb.cfg.DNSServers {
		resp, err := d.exchange(ctx, srv, q, overTCP)
		if err != nil {
			continue
		}
		if eg.learning() {
			answerAddrs(resp, eg.learn)
		}
		return resp
	}
	return errorReply(q, rcodeServFail)
}

// exchange sends q to srv and returns the matching response.
func (d *dnsServer) exchange(ctx context.Context, srv netip.AddrPort, q []byte, overTCP bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsPerServerTimeout)
	defer cancel()
	network := "udp"
	if overTCP {
		network = "tcp"
	}
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, network, srv.String())
	if err != nil {
		return nil, fmt.Errorf("dns upstream %v: %w", srv, err)
	}
	if !d.sb.track(c) {
		return nil, fmt.Errorf("dns upstream %v: closing", srv)
	}
	defer d.sb.untrack(c)
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if overTCP {
		return exchangeTCP(c, q)
	}
	return exchangeUDP(c.(*net.UDPConn), q)
}

var errAnswered = errors.New("answered")

// exchangeUDP sends q and waits (until c's deadline) for the response,
// holding a datagram buffer only while one is read (pumpHost).
func exchangeUDP(c *net.UDPConn, q []byte) ([]byte, error) {
	if _, err := c.Write(q); err != nil {
		return nil, fmt.Errorf("dns upstream: %w", err)
	}
	var resp []byte
	pumpHost(c, nil, 0, false, func(b []byte, _ netip.AddrPort, _ []byte) error {
		// Ignore stray datagrams: same id, and a response.
		if len(b) >= dnsHeaderLen && b[0] == q[0] && b[1] == q[1] && b[2]&0x80 != 0 {
			resp = append([]byte(nil), b...)
			return errAnswered
		}
		return nil
	})
	if resp == nil {
		return nil, fmt.Errorf("dns upstream %v: no answer", c.RemoteAddr())
	}
	return resp, nil
}

func exchangeTCP(c net.Conn, q []byte) ([]byte, error) {
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
	if _, err := c.Write(append(msg, q...)); err != nil {
		return nil, fmt.Errorf("dns upstream: %w", err)
	}
	var lb [2]byte
	if _, err := io.ReadFull(c, lb[:]); err != nil {
		return nil, fmt.Errorf("dns upstream: %w", err)
	}
	resp := make([]byte, binary.BigEndian.Uint16(lb[:]))
	if _, err := io.ReadFull(c, resp); err != nil {
		return nil, fmt.Errorf("dns upstream: %w", err)
	}
	if len(resp) < dnsHeaderLen || resp[0] != q[0] || resp[1] != q[1] {
		return nil, fmt.Errorf("dns upstream: mismatched response")
	}
	return resp, nil
}
