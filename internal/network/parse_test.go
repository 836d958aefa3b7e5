package network

import (
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePublish(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		in   string
		want Forward
		err  string
	}{
		{"8080:80", Forward{TCP, ap("0.0.0.0:8080"), 80}, ""},
		{"127.0.0.1:8080:80/udp", Forward{UDP, ap("127.0.0.1:8080"), 80}, ""},
		{"[::1]:8080:80/TCP", Forward{TCP, ap("[::1]:8080"), 80}, ""},
		{"0:53/udp", Forward{UDP, ap("0.0.0.0:0"), 53}, ""},
		{"80", Forward{}, "want [hostIP:]hostPort"},
		{"8080:0", Forward{}, "port 0"},
		{"8080:80/sctp", Forward{}, "not tcp or udp"},
		{"host:8080:80", Forward{}, "host IP"},
		{"8080:99999", Forward{}, "bad port"},
	} {
		got, err := ParsePublish(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseEgress(t *testing.T) {
	p := netip.MustParsePrefix
	got, err := ParseEgress("allow=10.0.0.0/8:80,443,8000-8100, deny=1.2.3.4 ,allow=[2001:db8::/32]:53,deny=2001:db8::1")
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Allow: true, Prefix: p("10.0.0.0/8"), Ports: []PortRange{{80, 80}, {443, 443}, {8000, 8100}}},
		{Prefix: p("1.2.3.4/32")},
		{Allow: true, Prefix: p("2001:db8::/32"), Ports: []PortRange{{53, 53}}},
		{Prefix: p("2001:db8::1/128")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"permit=1.2.3.4", "allow=1.2.3", "allow=1.2.3.4:0", "allow=1.2.3.4:9-1", "443", "deny=1.2.3.4,443", "allow=[::1"} {
		if _, err := ParseEgress(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseEgressDomains(t *testing.T) {
	got, err := ParseEgressDomains("allow=Example.org.,*.pypi.org,allow=files.pythonhosted.org")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.org", "*.pypi.org", "files.pythonhosted.org"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
	for _, bad := range []string{"allow=*", "allow=a.*.org", "allow=exa mple.org", "allow=..org", "allow=*example.org"} {
		if _, err := ParseEgressDomains(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	pats := []string{"example.org", "*.pypi.org"}
	for name, want := range map[string]bool{
		"example.org": true, "www.example.org": false, "pypi.org": false,
		"files.pypi.org": true, "a.b.pypi.org": true, "evilpypi.org": false,
	} {
		if got := domainMatch(pats, name); got != want {
			t.Errorf("%s: %v", name, got)
		}
	}
}

func TestEgressDecisions(t *testing.T) {
	mk := func(pol Policy, loop bool) *egress {
		cfg := Config{Egress: pol, AllowHostLoopback: loop}
		cfg.setDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		eg := newEgress(&cfg)
		t.Cleanup(eg.close)
		return eg
	}
	a := netip.MustParseAddr
	rules, _ := ParseEgress("deny=10.0.0.0/8,allow=192.0.2.0/24:443,deny=192.0.2.0/24")
	for _, tc := range []struct {
		name  string
		eg    *egress
		proto string
		dst   string
		port  uint16
		want  bool
	}{
		{"default allows", mk(Policy{}, false), "tcp", "93.184.216.34", 80, true},
		{"metadata blocked", mk(Policy{}, true), "tcp", "169.254.169.254", 80, false},
		{"loopback range blocked", mk(Policy{}, true), "tcp", "127.0.0.1", 80, false},
		{"subnet blocked", mk(Policy{}, true), "tcp", "10.0.2.5", 80, false},
		{"gateway needs flag", mk(Policy{}, false), "tcp", "10.0.2.2", 80, false},
		{"gateway with flag", mk(Policy{}, true), "tcp", "10.0.2.2", 80, true},
		{"gateway under deny rule", mk(Policy{Rules: rules}, true), "tcp", "10.0.2.2", 80, false},
		{"deny rule", mk(Policy{Rules: rules}, false), "udp", "10.1.2.3", 53, false},
		{"allow rule port", mk(Policy{Rules: rules}, false), "tcp", "192.0.2.7", 443, true},
		{"later deny", mk(Policy{Rules: rules}, false), "tcp", "192.0.2.7", 80, false},
		{"allowlist default deny", mk(Policy{Rules: rules}, false), "tcp", "198.51.100.1", 80, false},
		{"icmp skips port rules", mk(Policy{Rules: rules}, false), "icmp", "192.0.2.7", 0, false},
		{"denylist default allow", mk(Policy{Rules: []Rule{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}}, false), "tcp", "192.0.2.7", 80, true},
		{"domains unresolved", mk(Policy{Domains: []string{"example.org"}}, false), "tcp", "192.0.2.7", 80, false},
		{"ipv6", mk(Policy{}, false), "tcp", "2001:db8::1", 80, false},
	} {
		if got, why := tc.eg.decide(tc.proto, a(tc.dst), tc.port); got != tc.want {
			t.Errorf("%s: %s %s:%d = %v (%s), want %v", tc.name, tc.proto, tc.dst, tc.port, got, why, tc.want)
		}
	}
	// Cloud metadata services outside 169.254/16, closed even under an
	// allow-all rule and with host loopback allowed.
	all := mk(Policy{Rules: []Rule{{Allow: true, Prefix: netip.MustParsePrefix("0.0.0.0/0")}, {Allow: true, Prefix: netip.MustParsePrefix("::/0")}}}, true)
	for _, m := range []string{"168.63.129.16", "100.100.100.200", "192.0.0.192",
		"fd00:ec2::254", "fd00:ec2::23", "fd20:ce::254", "fd00:42::42", "fd00:c1::a9fe:a9fe", "fe80::a9fe:a9fe", "::ffff:100.100.100.200"} {
		for _, proto := range []string{"tcp", "udp", "icmp"} {
			if ok, why := all.decide(proto, a(m), 80); ok || !strings.HasPrefix(why, "blocked range") {
				t.Errorf("metadata %s %s: allowed %v (%s), want a blocked range", proto, m, ok, why)
			}
		}
	}
	eg := mk(Policy{Domains: []string{"example.org"}}, false)
	eg.learn(a("192.0.2.7"), 5)
	if ok, _ := eg.decide("tcp", a("192.0.2.7"), 80); !ok {
		t.Error("resolved address denied")
	}
	if exp := eg.resolved[a("192.0.2.7")]; time.Until(exp) < minResolvedTTL-time.Second {
		t.Errorf("short TTL not raised to the minimum: %v", time.Until(exp))
	}
	if !eg.nameAllowed("EXAMPLE.org.") || eg.nameAllowed("www.example.org") {
		t.Error("nameAllowed")
	}
}

func TestDNSMessage(t *testing.T) {
	q := buildQuery(0xbeef, "Www.Example.org", dnsTypeAAAA)
	qs, n, err := parseQuestion(q)
	if err != nil || n != 1 || qs.name != "www.example.org" || qs.qtype != dnsTypeAAAA || qs.end != len(q) {
		t.Fatalf("%+v %d %v", qs, n, err)
	}
	d := &testDNS{records: map[string][]testRR{"www.example.org": {
		{typ: dnsTypeAAAA, ttl: 77, addr: netip.MustParseAddr("2001:db8::5")},
		{typ: dnsTypeAAAA, ttl: 88, addr: netip.MustParseAddr("2001:db8::6")},
	}}, sent: map[uint16][]byte{}}
	resp := d.answer(q)
	var got []string
	if err := answerAddrs(resp, func(a netip.Addr, ttl uint32) { got = append(got, a.String()+"/"+strconv.FormatUint(uint64(ttl), 10)) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"2001:db8::5/77", "2001:db8::6/88"}; !reflect.DeepEqual(got, want) {
		t.Errorf("answers %v", got)
	}
	r := errorReply(q, rcodeRefused)
	if r[0] != 0xbe || r[1] != 0xef || r[2]&0x80 == 0 || r[2]&1 == 0 || rcode(r) != rcodeRefused || len(r) != len(q) {
		t.Errorf("refused reply % x", r)
	}
	// Malformed input never panics.
	for i := range resp {
		answerAddrs(resp[:i], func(netip.Addr, uint32) {})
		parseQuestion(resp[:i])
	}
	loop := append(append([]byte(nil), q[:12]...), 0xc0, 12, 0, 1, 0, 1)
	if _, _, err := parseQuestion(loop); err == nil {
		t.Error("compression loop accepted")
	}
}

func TestEtcFiles(t *testing.T) {
	host := []byte("# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nsearch corp.example\noptions edns0 trust-ad\n")
	if got := HostDNSServers(host); len(got) != 3 || got[0].String() != "127.0.0.53:53" || got[2].Addr().Zone() != "eth0" {
		t.Errorf("HostDNSServers %v", got)
	}
	rc := string(ResolvConf(host, DefaultGateway))
	if !strings.Contains(rc, "nameserver 10.0.2.2\n") || strings.Count(rc, "nameserver") != 1 ||
		!strings.Contains(rc, "search corp.example\n") || !strings.Contains(rc, "options edns0 trust-ad\n") {
		t.Errorf("ResolvConf:\n%s", rc)
	}
	h := string(Hosts("web.example", DefaultContainerIP, DefaultGateway, false))
	if !strings.Contains(h, "10.0.2.100\tweb.example web\n") || strings.Contains(h, "host.containers.internal") {
		t.Errorf("Hosts:\n%s", h)
	}
	if h := string(Hosts("web", DefaultContainerIP, DefaultGateway, true)); !strings.Contains(h, "10.0.2.2\thost.containers.internal") {
		t.Errorf("Hosts with loopback:\n%s", h)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{Subnet: netip.MustParsePrefix("10.0.3.0/24")}, // gateway outside
		{ContainerIP: DefaultGateway},
		{MTU: 100},
		{Egress: Policy{Domains: []string{"bad domain"}}},
	} {
		cfg.setDefaults()
		if err := cfg.validate(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
