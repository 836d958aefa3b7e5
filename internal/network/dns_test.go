package network

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// A tiny authoritative DNS server for tests, on hostsim's 127.0.0.1 (UDP and
// TCP, same port). It remembers every response it sent, so tests can check
// that the forwarder relays them byte for byte.

type testRR struct {
	typ  uint16
	ttl  uint32
	addr netip.Addr
}

type testDNS struct {
	addr    netip.AddrPort
	records map[string][]testRR

	mu      sync.Mutex
	sent    map[uint16][]byte // by query id
	queries []string
}

func startTestDNS(t testing.TB, records map[string][]testRR) *testDNS {
	t.Helper()
	d := &testDNS{records: records, sent: map[uint16][]byte{}}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	d.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	go d.serveUDP(pc)
	serveFor(ln, 10*time.Second, d.serveTCP)
	return d
}

func (d *testDNS) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 4096)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := d.answer(buf[:n]); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func (d *testDNS) serveTCP(c net.Conn) {
	for {
		q, err := readFramed(c)
		if err != nil {
			return
		}
		if resp := d.answer(q); resp != nil {
			writeFramed(c, resp)
		}
	}
}

// answer builds a response: the question copied, answers pointing at it.
func (d *testDNS) answer(q []byte) []byte {
	qs, _, err := parseQuestion(q)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	d.queries = append(d.queries, qs.name)
	d.mu.Unlock()
	var ans []testRR
	for _, rr := range d.records[qs.name] {
		if rr.typ == qs.qtype {
			ans = append(ans, rr)
		}
	}
	resp := append([]byte(nil), q[:qs.end]...)
	resp[2] = 0x80 | q[2]&0x01 | 0x04 // QR, RD copied, AA
	resp[3] = 0x80                    // RA, NOERROR
	if _, ok := d.records[qs.name]; !ok {
		resp[3] |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], uint16(len(ans)))
	binary.BigEndian.PutUint32(resp[8:], 0) // NS, AR
	for _, rr := range ans {
		resp = append(resp, 0xc0, 12) // name: pointer to the question
		resp = binary.BigEndian.AppendUint16(resp, rr.typ)
		resp = binary.BigEndian.AppendUint16(resp, dnsClassIN)
		resp = binary.BigEndian.AppendUint32(resp, rr.ttl)
		a := rr.addr.AsSlice()
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(a)))
		resp = append(resp, a...)
	}
	d.mu.Lock()
	d.sent[binary.BigEndian.Uint16(q)] = resp
	d.mu.Unlock()
	return resp
}

func (d *testDNS) sentFor(id uint16) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent[id]
}

func (d *testDNS) asked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, q := range d.queries {
		if q == name {
			return true
		}
	}
	return false
}

func buildQuery(id uint16, name string, qtype uint16) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, QDCOUNT=1
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(q, byte(len(l)))
		q = append(q, l...)
	}
	q = append(q, 0)
	q = binary.BigEndian.AppendUint16(q, qtype)
	return binary.BigEndian.AppendUint16(q, dnsClassIN)
}

func readFramed(r io.Reader) ([]byte, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(lb[:]))
	_, err := io.ReadFull(r, m)
	return m, err
}

func writeFramed(w io.Writer, m []byte) error {
	_, err := w.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(m))), m...))
	return err
}

// ctrQuery asks the gateway's DNS from inside the container.
func (c *ctr) query(t testing.TB, overTCP bool, id uint16, name string, qtype uint16) []byte {
	t.Helper()
	q := buildQuery(id, name, qtype)
	network := "udp"
	if overTCP {
		network = "tcp"
	}
	conn, err := c.dial(network, "10.0.2.2:53", 5*time.Second)
	if err != nil {
		t.Fatalf("dial dns/%s: %v", network, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(8 * time.Second))
	var resp []byte
	if overTCP {
		if err := writeFramed(conn, q); err == nil {
			resp, err = readFramed(conn)
		}
	} else if _, err = conn.Write(q); err == nil {
		buf := make([]byte, 65535)
		var n int
		n, err = conn.Read(buf)
		resp = buf[:n]
	}
	if err != nil {
		t.Fatalf("dns/%s query %s: %v", network, name, err)
	}
	if binary.BigEndian.Uint16(resp) != id {
		t.Fatalf("dns/%s: response id %d, want %d", network, binary.BigEndian.Uint16(resp), id)
	}
	return resp
}

func rcode(resp []byte) int { return int(resp[3] & 0x0f) }

var testRecords = map[string][]testRR{
	"svc.test": {
		{typ: dnsTypeA, ttl: 1234, addr: netip.MustParseAddr("192.0.2.10")},
		{typ: dnsTypeAAAA, ttl: 4321, addr: netip.MustParseAddr("2001:db8::10")},
	},
	"www.allowed.test": {{typ: dnsTypeA, ttl: 300, addr: remoteA}},
	"www.denied.test":  {{typ: dnsTypeA, ttl: 300, addr: remoteC}},
}

func TestDNSForwarding(t *testing.T) {
	dns := startTestDNS(t, testRecords)
	c := newCtr(t, Config{DNSServers: []netip.AddrPort{dns.addr}})
	id := uint16(100)
	for _, overTCP := range []bool{false, true} {
		for _, want := range testRecords["svc.test"] {
			id++
			resp := c.query(t, overTCP, id, "svc.test", want.typ)
			if !bytes.Equal(resp, dns.sentFor(id)) {
				t.Errorf("tcp=%v type %d: response was not relayed unchanged:\n got %x\nwant %x", overTCP, want.typ, resp, dns.sentFor(id))
			}
			var got []testRR
			answers(resp, func(rr dnsRR) {
				a, _ := netip.AddrFromSlice(rr.data)
				got = append(got, testRR{rr.typ, rr.ttl, a})
			})
			if len(got) != 1 || got[0] != want {
				t.Errorf("tcp=%v: answers %+v, want %+v", overTCP, got, want)
			}
		}
		id++
		if resp := c.query(t, overTCP, id, "nope.test", dnsTypeA); rcode(resp) != 3 {
			t.Errorf("tcp=%v: rcode %d for a missing name, want NXDOMAIN", overTCP, rcode(resp))
		}
	}
}

func TestDNSDomainAllowlist(t *testing.T) {
	dns := startTestDNS(t, testRecords)
	c := newCtr(t, Config{DNSServers: []netip.AddrPort{dns.addr},
		Egress: Policy{Domains: []string{"*.allowed.test"}}})
	for i, overTCP := range []bool{false, true} {
		resp := c.query(t, overTCP, uint16(200+i), "www.denied.test", dnsTypeA)
		if rcode(resp) != rcodeRefused {
			t.Errorf("tcp=%v: rcode %d for a disallowed name, want REFUSED", overTCP, rcode(resp))
		}
		resp = c.query(t, overTCP, uint16(210+i), "WWW.Allowed.Test", dnsTypeA)
		if rcode(resp) != 0 || !bytes.Equal(resp, dns.sentFor(uint16(210+i))) {
			t.Errorf("tcp=%v: allowed name: rcode %d, relayed unchanged %v", overTCP, rcode(resp), bytes.Equal(resp, dns.sentFor(uint16(210+i))))
		}
	}
	if dns.asked("www.denied.test") {
		t.Error("a refused query reached the upstream resolver")
	}
	if n := c.logs.count(`"www.denied.test" refused`); n != 1 {
		t.Errorf("refusal logged %d times, want once", n)
	}
}

func TestDNSNoUpstream(t *testing.T) {
	// A resolver that does not answer: the client gets SERVFAIL, in bounded time.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := newCtr(t, Config{DNSServers: []netip.AddrPort{netip.MustParseAddrPort(pc.LocalAddr().String())}})
	start := time.Now()
	if resp := c.query(t, false, 7, "svc.test", dnsTypeA); rcode(resp) != rcodeServFail {
		t.Errorf("rcode %d, want SERVFAIL", rcode(resp))
	}
	if d := time.Since(start); d > dnsTotalTimeout+time.Second {
		t.Errorf("took %v", d)
	}
}

// The gateway's DNS is a channel out: egress rules that close gateway:53,
// or an allowlist of rules without --egress-domain, make it answer REFUSED
// without asking upstream; deny rules that spare it leave it open.
func TestDNSUnderEgressRules(t *testing.T) {
	dns := startTestDNS(t, testRecords)
	for i, tc := range []struct {
		rules string
		open  bool
	}{
		{"deny=0.0.0.0/0", false},
		{"deny=10.0.2.2:53", false},
		{"allow=192.0.2.0/24", false},
		{"deny=192.0.2.0/24", true},
		{"allow=192.0.2.0/24,allow=10.0.2.2:53", true},
		{"allow=0.0.0.0/0:53", true},
	} {
		rules, err := ParseEgress(tc.rules)
		if err != nil {
			t.Fatal(err)
		}
		c := newCtr(t, Config{DNSServers: []netip.AddrPort{dns.addr}, Egress: Policy{Rules: rules}})
		for j, overTCP := range []bool{false, true} {
			id := uint16(300 + 2*i + j)
			name := fmt.Sprintf("q%d.svc.test", id)
			resp := c.query(t, overTCP, id, name, dnsTypeA)
			if got := rcode(resp) != rcodeRefused; got != tc.open {
				t.Errorf("%s, tcp=%v: rcode %d, want open=%v", tc.rules, overTCP, rcode(resp), tc.open)
			}
			if dns.asked(name) != tc.open {
				t.Errorf("%s, tcp=%v: upstream asked %v, want %v", tc.rules, overTCP, dns.asked(name), tc.open)
			}
		}
		if n := c.logs.count("dns queries refused"); tc.open && n != 0 || !tc.open && n != 1 {
			t.Errorf("%s: refusal logged %d times", tc.rules, n)
		}
	}
}
