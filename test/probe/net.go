package main

// Network commands: clients and a server for the sandbox network tests.
// Every client command prints one JSON object and exits 0 whatever the
// network did (the test reads the result), unless its arguments are bad.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

const netTimeout = 10 * time.Second

// netResult is what the network clients print: resultOf's report (errno
// found through the net package's wrapping) plus the time taken.
type netResult struct {
	errnoResult
	MS int64 `json:"ms"`
}

func netResultOf(start time.Time, data string, err error) netResult {
	r := netResult{errnoResult: resultOf(err), MS: time.Since(start).Milliseconds()}
	if data != "" {
		r.Data = &data
	}
	return r
}

// cmdDial connects over TCP and reads until EOF.
func cmdDial(args []string) error {
	timeout := netTimeout
	if len(args) > 1 {
		d, err := parseSeconds(args[1])
		if err != nil {
			return err
		}
		timeout = d
	}
	start := time.Now()
	data, err := dialRead(args[0], timeout)
	return emit(netResultOf(start, data, err))
}

func dialRead(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// cmdConns makes N connections in a row (dial, read to EOF, close).
func cmdConns(args []string) error {
	n, err := strconv.Atoi(args[1])
	if err != nil || n <= 0 {
		return usagef("bad count %q", args[1])
	}
	var res struct {
		OK     int    `json:"ok"`
		Failed int    `json:"failed"`
		Error  string `json:"error,omitempty"`
		MS     int64  `json:"ms"`
	}
	start := time.Now()
	for range n {
		if _, err := dialRead(args[0], netTimeout); err != nil {
			res.Failed++
			if res.Error == "" {
				res.Error = err.Error()
			}
			continue
		}
		res.OK++
	}
	res.MS = time.Since(start).Milliseconds()
	return emit(res)
}

// cmdUDP sends one datagram and waits for one reply.
func cmdUDP(args []string) error {
	start := time.Now()
	data, err := udpExchange(args[0], args[1])
	return emit(netResultOf(start, data, err))
}

func udpExchange(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// cmdServe answers every TCP connection and UDP datagram on PORT with
// "hello PEER\n" until SECONDS have passed.
func cmdServe(args []string) error {
	port, err := strconv.ParseUint(args[0], 10, 16)
	if err != nil {
		return usagef("bad port %q", args[0])
	}
	d, err := parseSeconds(args[1])
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte("hello "+from.String()+"\n"), from)
		}
	}()
	fmt.Println("ready")
	time.Sleep(d)
	return nil
}

// dnsAnswer is one A or AAAA record of a reply.
type dnsAnswer struct {
	Type string `json:"type"`
	TTL  uint32 `json:"ttl"`
	Data string `json:"data"`
}

// cmdDNS sends one query (UDP, or TCP with a 4th argument "tcp") and prints
// the reply's rcode and A/AAAA answers.
func cmdDNS(args []string) error {
	server, name, typ := args[0], args[1], strings.ToUpper(args[2])
	qtype := map[string]uint16{"A": 1, "AAAA": 28}[typ]
	if qtype == 0 {
		return usagef("query type %q: want A or AAAA", typ)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "53")
	}
	overTCP := len(args) > 3 && args[3] == "tcp"
	var res struct {
		OK      bool        `json:"ok"`
		Rcode   int         `json:"rcode"`
		Answers []dnsAnswer `json:"answers"`
		Error   string      `json:"error,omitempty"`
	}
	reply, err := dnsExchange(server, dnsQuery(name, qtype), overTCP)
	if err == nil {
		res.Rcode, res.Answers, err = parseDNSReply(reply)
	}
	if err != nil {
		res.Error = err.Error()
	} else {
		res.OK = true
	}
	return emit(res)
}

func dnsQuery(name string, qtype uint16) []byte {
	q := []byte{0x4d, 0x6f, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, qtype)
	return binary.BigEndian.AppendUint16(q, 1)
}

func dnsExchange(server string, q []byte, overTCP bool) ([]byte, error) {
	network := "udp"
	if overTCP {
		network = "tcp"
	}
	c, err := net.DialTimeout(network, server, netTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if !overTCP {
		if _, err := c.Write(q); err != nil {
			return nil, err
		}
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		return buf[:n], err
	}
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err = io.ReadFull(c, buf)
	return buf, err
}

var errShortDNS = errors.New("short DNS reply")

func parseDNSReply(m []byte) (int, []dnsAnswer, error) {
	if len(m) < 12 {
		return 0, nil, errShortDNS
	}
	rcode := int(m[3] & 0x0f)
	qd, an := int(binary.BigEndian.Uint16(m[4:])), int(binary.BigEndian.Uint16(m[6:]))
	off := 12
	var err error
	for range qd {
		if off, err = skipName(m, off); err != nil {
			return rcode, nil, err
		}
		off += 4
	}
	answers := []dnsAnswer{}
	for range an {
		if off, err = skipName(m, off); err != nil || off+10 > len(m) {
			return rcode, nil, errShortDNS
		}
		typ, ttl := binary.BigEndian.Uint16(m[off:]), binary.BigEndian.Uint32(m[off+4:])
		rdl := int(binary.BigEndian.Uint16(m[off+8:]))
		off += 10
		if off+rdl > len(m) {
			return rcode, nil, errShortDNS
		}
		if a, ok := netip.AddrFromSlice(m[off : off+rdl]); ok && (typ == 1 || typ == 28) {
			answers = append(answers, dnsAnswer{Type: map[uint16]string{1: "A", 28: "AAAA"}[typ], TTL: ttl, Data: a.String()})
		}
		off += rdl
	}
	return rcode, answers, nil
}

func skipName(m []byte, off int) (int, error) {
	for off < len(m) {
		l := int(m[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xc0 == 0xc0:
			return off + 2, nil
		}
		off += l + 1
	}
	return 0, errShortDNS
}

// cmdFlood floods a server, for the network's memory bounds: "udp" sends
// one SIZE-byte datagram from each of N sockets in turn (N new flows);
// "dns" sends N A queries (distinct ids and names, SIZE ignored) from one
// socket without waiting, then reads answers for a second; "tcp" opens N
// connections at once and writes on each until a write blocks for 3 s (a
// server that never reads), then closes them all. Prints
// {"sent","answers","bytes","error","ms"}.
func cmdFlood(args []string) error {
	kind, addr := args[0], args[1]
	n, err := strconv.Atoi(args[2])
	if err != nil || n <= 0 {
		return usagef("bad count %q", args[2])
	}
	size := 0
	if len(args) > 3 {
		if size, err = strconv.Atoi(args[3]); err != nil || size < 0 || size > 65507 {
			return usagef("bad size %q", args[3])
		}
	}
	var res struct {
		Sent    int    `json:"sent"`
		Answers int    `json:"answers"`
		Bytes   int64  `json:"bytes"`
		Error   string `json:"error,omitempty"`
		MS      int64  `json:"ms"`
	}
	start := time.Now()
	switch kind {
	case "udp":
		err = floodUDP(addr, n, size, &res.Sent)
	case "dns":
		err = floodDNS(addr, n, &res.Sent, &res.Answers)
	case "tcp":
		err = floodTCP(addr, n, &res.Sent, &res.Bytes)
	default:
		return usagef("flood %q: want udp, dns or tcp", kind)
	}
	if err != nil {
		res.Error = err.Error()
	}
	res.MS = time.Since(start).Milliseconds()
	return emit(res)
}

func floodUDP(addr string, n, size int, sent *int) error {
	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	for range n {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		_, err = c.Write(msg)
		c.Close()
		if err != nil {
			return err
		}
		*sent++
	}
	return nil
}

func floodTCP(addr string, n int, sent *int, written *int64) error {
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		conns []net.Conn
		first error
	)
	chunk := make([]byte, 64<<10)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			mu.Lock()
			if err != nil {
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			conns = append(conns, c)
			*sent++
			mu.Unlock()
			var w int64
			for {
				c.SetWriteDeadline(time.Now().Add(3 * time.Second))
				k, err := c.Write(chunk)
				w += int64(k)
				if err != nil {
					break // blocked: the far side does not read
				}
			}
			mu.Lock()
			*written += w
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	return first
}

func floodDNS(addr string, n int, sent, answers *int) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range n {
		q := dnsQuery(fmt.Sprintf("f%d.flood.test", i), 1)
		binary.BigEndian.PutUint16(q, uint16(i))
		if _, err := c.Write(q); err != nil {
			return err
		}
		*sent++
	}
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, err := c.Read(buf); err != nil {
			return nil // the deadline: done
		}
		*answers++
	}
}
