package e2e

// The network modes and the sandbox network (user-mode NAT, DNS forwarding,
// port forwards, egress policy), end to end through moat boot. All traffic
// stays on this host: servers listen on 127.0.0.1 or on the host's own
// address, which the kernel routes over loopback (and which the container
// reaches only with --allow-host-loopback).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type specsNamespace = specs.LinuxNamespace

const gateway = "10.0.2.2"

// netEnv is an env whose containers get the sandbox network with flags.
func netEnv(t *testing.T, flags ...string) *env {
	t.Helper()
	e := newEnv(t)
	e.globals = append(e.globals, append([]string{"--network=sandbox"}, flags...)...)
	return e
}

// hold runs a container that holds for ten minutes, detached.
func hold(e *env) string {
	e.t.Helper()
	id, _ := holding(e)
	return id
}

// dialResult is what probe dial/udp print.
type dialResult struct {
	OK    bool   `json:"ok"`
	Name  string `json:"name"`
	Error string `json:"error"`
	Data  string `json:"data"`
	MS    int64  `json:"ms"`
}

// greeter serves "hi NAME\n" to every TCP connection on addr and returns the
// port.
func greeter(t *testing.T, addr, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hi %s\n", name)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostAddr is a non-loopback IPv4 address of this host (traffic to it stays
// on the host).
func hostAddr(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	must(t, err)
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			return p.Addr().String()
		}
	}
	t.Skip("this host has no non-loopback IPv4 address to play a remote server")
	return ""
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestSandboxNetworkSetup(t *testing.T) {
	e := netEnv(t)
	out := e.runProbe([]string{"cat", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/sys/class/net/tap0/mtu"})
	for _, want := range []string{"nameserver 10.0.2.2\n", "127.0.0.1\tlocalhost", "10.0.2.100\tmoat-test\n", "moat-test\n65520\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("container files lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "host.containers.internal") {
		t.Errorf("/etc/hosts names the host without --allow-host-loopback:\n%s", out)
	}
	// The generated files live on the host: the container cannot grow them.
	var w struct {
		OK   bool   `json:"ok"`
		Name string `json:"name"`
	}
	e.runJSON(&w, []string{"open", "/etc/hosts", "wronly|append"})
	if w.OK || w.Name != "EROFS" {
		t.Errorf("/etc/hosts opened for writing: %+v; want EROFS", w)
	}
	// The TAP fd belongs to boot alone.
	if fds := e.runProbe([]string{"fds"}); strings.Contains(fds, "tun") {
		t.Errorf("the container holds the TAP device: %s", fds)
	}
	// A spec mount of /etc/hosts wins over the generated one.
	hosts := e.dir + "/myhosts"
	must(t, os.WriteFile(hosts, []byte("10.9.9.9 mine\n"), 0o644))
	out = e.runProbe([]string{"cat", "/etc/hosts"}, func(s *specsSpec) { bindMount(s, hosts, "/etc/hosts", "ro") })
	if out != "10.9.9.9 mine\n" {
		t.Errorf("spec's /etc/hosts replaced: %q", out)
	}
}

func TestSandboxHostLoopback(t *testing.T) {
	port := greeter(t, "127.0.0.1:0", "host")
	url := fmt.Sprintf("%s:%d", gateway, port)
	var r dialResult
	netEnv(t).runJSON(&r, []string{"dial", url, "5"})
	if r.OK || r.Name != "ECONNREFUSED" {
		t.Errorf("host loopback reachable without --allow-host-loopback: %+v", r)
	}
	e := netEnv(t, "--allow-host-loopback")
	e.runJSON(&r, []string{"dial", url, "5"})
	if !r.OK || r.Data != "hi host\n" {
		t.Errorf("host loopback with --allow-host-loopback: %+v", r)
	}
	if out := e.runProbe([]string{"cat", "/etc/hosts"}); !strings.Contains(out, "10.0.2.2\thost.containers.internal") {
		t.Errorf("/etc/hosts does not name the host:\n%s", out)
	}
}

// dnsServer answers A and AAAA queries for names on 127.0.0.1 (UDP and
// TCP, same port) with TTLs 1234 and 4321, and NXDOMAIN otherwise.
func dnsServer(t *testing.T, names map[string]string) int {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if ln, err = net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { pc.Close(); ln.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(dnsAnswer(buf[:n], names), from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var l [2]byte
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(l[:]); err == nil {
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err == nil {
					a := dnsAnswer(q, names)
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
				}
			}
			c.Close()
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// dnsAnswer builds the reply to one query.
func dnsAnswer(q []byte, names map[string]string) []byte {
	if len(q) < 12 {
		return nil
	}
	off, name := 12, ""
	for off < len(q) && q[off] != 0 {
		l := int(q[off])
		if off+1+l > len(q) {
			return nil
		}
		name += string(q[off+1:off+1+l]) + "."
		off += 1 + l
	}
	if off+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off+1:])
	question := q[12 : off+5]
	r := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0}, question...)
	addr, ok := names[strings.TrimSuffix(name, ".")]
	if !ok {
		r[3] = 0x83 // NXDOMAIN
		return r
	}
	var rdata []byte
	var ttl uint32
	switch qtype {
	case 1:
		rdata, ttl = netip.MustParseAddr(addr).AsSlice(), 1234
	case 28:
		rdata, ttl = netip.MustParseAddr("2001:db8::77").AsSlice(), 4321
	default:
		return r
	}
	r[7] = 1
	r = append(r, 0xc0, 12)
	r = binary.BigEndian.AppendUint16(r, qtype)
	r = binary.BigEndian.AppendUint16(r, 1)
	r = binary.BigEndian.AppendUint32(r, ttl)
	r = binary.BigEndian.AppendUint16(r, uint16(len(rdata)))
	return append(r, rdata...)
}

type dnsResult struct {
	OK      bool `json:"ok"`
	Rcode   int  `json:"rcode"`
	Answers []struct {
		Type string `json:"type"`
		TTL  uint32 `json:"ttl"`
		Data string `json:"data"`
	} `json:"answers"`
	Error string `json:"error"`
}

func TestSandboxDNS(t *testing.T) {
	port := dnsServer(t, map[string]string{"svc.moat.test": "192.0.2.77"})
	e := netEnv(t, fmt.Sprintf("--dns=127.0.0.1:%d", port))
	id := hold(e)
	for _, tc := range []struct {
		typ, proto, data string
		ttl              uint32
	}{
		{"A", "udp", "192.0.2.77", 1234},
		{"AAAA", "udp", "2001:db8::77", 4321},
		{"A", "tcp", "192.0.2.77", 1234},
	} {
		var r dnsResult
		execJSON(e, &r, []string{id}, "dns", gateway, "svc.moat.test", tc.typ, tc.proto)
		if !r.OK || r.Rcode != 0 || len(r.Answers) != 1 || r.Answers[0].Data != tc.data || r.Answers[0].TTL != tc.ttl {
			t.Errorf("%s over %s: %+v; want %s with TTL %d", tc.typ, tc.proto, r, tc.data, tc.ttl)
		}
	}
	var r dnsResult
	execJSON(e, &r, []string{id}, "dns", gateway, "nope.moat.test", "A")
	if !r.OK || r.Rcode != 3 {
		t.Errorf("unknown name: %+v; want NXDOMAIN passed through", r)
	}
}

func TestSandboxPortForward(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	e := netEnv(t, fmt.Sprintf("--publish=127.0.0.1:%d:8080", p1))
	b := e.newBundle([]string{"serve", "8080", "120"})
	id := e.id()
	e.moat("run", "--detach", "--bundle", b.dir, id)
	got := dialHost(t, fmt.Sprintf("127.0.0.1:%d", p1), "hello ")
	// A loopback client shows up as the gateway.
	if !strings.HasPrefix(got, "hello "+gateway+":") {
		t.Errorf("through the forward: %q", got)
	}
	if ls := e.moat("port", "ls", id); ls != fmt.Sprintf("127.0.0.1:%d:8080/tcp\n", p1) {
		t.Errorf("port ls: %q", ls)
	}
	// Forwards come and go while the container runs; UDP too.
	e.moat("port", "add", id, fmt.Sprintf("127.0.0.1:%d:8080/udp", p2))
	if got := udpHost(t, fmt.Sprintf("127.0.0.1:%d", p2)); !strings.HasPrefix(got, "hello "+gateway+":") {
		t.Errorf("through the UDP forward: %q", got)
	}
	e.moat("port", "rm", id, fmt.Sprintf("127.0.0.1:%d:8080", p1))
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), 2*time.Second); err == nil {
		c.Close()
		t.Error("removed forward still accepts connections")
	}
	e.fails("already", "port", "add", id, fmt.Sprintf("127.0.0.1:%d:8080/udp", p2))
	// A non-loopback client keeps its address.
	ha := hostAddr(t)
	p3 := freePort(t)
	e.moat("port", "add", id, fmt.Sprintf("%s:%d:8080", ha, p3))
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ha)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", net.JoinHostPort(ha, fmt.Sprint(p3)))
	must(t, err)
	buf := make([]byte, 100)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "hello "+ha+":") {
		t.Errorf("source address not preserved: %q", buf[:n])
	}
	plain := newEnv(t)
	plain.fails("no sandbox network", "port", "ls", hold(plain))
	// The container's end releases its host ports.
	e.moat("delete", "--force", id)
	ln, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", ha, p3))
	if err != nil {
		t.Errorf("host port still taken after delete: %v", err)
	} else {
		ln.Close()
	}
	pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p2))
	if err != nil {
		t.Errorf("UDP host port still taken after delete: %v", err)
	} else {
		pc.Close()
	}
}

// dialHost connects from the host until the container's server answers
// with want (the forward exists before the server listens).
func dialHost(t *testing.T, addr, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 200)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), want) {
				return string(buf[:n])
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer %q through %s: %v", want, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func udpHost(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	must(t, err)
	defer c.Close()
	buf := make([]byte, 200)
	for range 5 {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no UDP answer through %s", addr)
	return ""
}

func TestSandboxEgress(t *testing.T) {
	ha := hostAddr(t)
	open, closed := greeter(t, ha+":0", "open"), greeter(t, ha+":0", "closed")
	lo := greeter(t, "127.0.0.1:0", "lo")
	dial := func(e *env, id string, addr string) dialResult {
		var r dialResult
		execJSON(e, &r, []string{id}, "dial", addr, "5")
		return r
	}
	refused := func(r dialResult) bool { return !r.OK && r.Name == "ECONNREFUSED" && r.MS < 3000 }
	t.Run("cidr-and-port", func(t *testing.T) {
		e := netEnv(t, "--allow-host-loopback", fmt.Sprintf("--egress=allow=%s/32:%d", ha, open), fmt.Sprintf("--egress=deny=%s:%d", gateway, lo)).in(t)
		id := hold(e)
		if r := dial(e, id, fmt.Sprintf("%s:%d", ha, open)); !r.OK || r.Data != "hi open\n" {
			t.Errorf("allowed destination: %+v", r)
		}
		if r := dial(e, id, fmt.Sprintf("%s:%d", ha, closed)); !refused(r) {
			t.Errorf("port outside the allow rule: %+v; want an immediate refusal", r)
		}
		if r := dial(e, id, fmt.Sprintf("%s:%d", gateway, lo)); !refused(r) {
			t.Errorf("denied host loopback port: %+v", r)
		}
		for _, m := range []string{"169.254.169.254", "168.63.129.16", "100.100.100.200", "192.0.0.192"} {
			if r := dial(e, id, m+":80"); !refused(r) {
				t.Errorf("cloud metadata address %s: %+v", m, r)
			}
		}
		var u dialResult
		execJSON(e, &u, []string{id}, "udp", fmt.Sprintf("%s:%d", ha, closed), "x")
		if u.OK {
			t.Errorf("UDP to a denied destination answered: %+v", u)
		}
	})
	t.Run("deny-only", func(t *testing.T) {
		e := netEnv(t, "--allow-host-loopback", fmt.Sprintf("--egress=deny=%s/32:%d", ha, closed)).in(t)
		id := hold(e)
		if r := dial(e, id, fmt.Sprintf("%s:%d", ha, open)); !r.OK {
			t.Errorf("destination no rule denies: %+v", r)
		}
		if r := dial(e, id, fmt.Sprintf("%s:%d", ha, closed)); !refused(r) {
			t.Errorf("denied destination: %+v", r)
		}
	})
	t.Run("dns-closed-by-rules", func(t *testing.T) {
		dns := dnsServer(t, map[string]string{"svc.moat.test": "192.0.2.77"})
		for _, tc := range []struct {
			rules string
			open  bool
		}{
			{"deny=0.0.0.0/0", false},                                   // deny rules that close the gateway's port 53
			{fmt.Sprintf("allow=%s/32", ha), false},                     // an allowlist without --egress-domain
			{fmt.Sprintf("allow=%s/32,allow=%s:53", ha, gateway), true}, // ... that allows the gateway's DNS
			{fmt.Sprintf("deny=%s/32", ha), true},                       // deny rules that spare it
		} {
			e := netEnv(t, fmt.Sprintf("--dns=127.0.0.1:%d", dns), "--egress="+tc.rules).in(t)
			var d dnsResult
			e.runJSON(&d, []string{"dns", gateway, "svc.moat.test", "A"})
			if got := d.OK && d.Rcode == 0 && len(d.Answers) == 1; got != tc.open || !tc.open && d.Rcode != 5 {
				t.Errorf("--egress=%s: %+v; want resolved %v (else REFUSED)", tc.rules, d, tc.open)
			}
		}
	})
	t.Run("domain", func(t *testing.T) {
		dns := dnsServer(t, map[string]string{"allowed.moat.test": ha, "other.moat.test": ha})
		e := netEnv(t, "--allow-host-loopback", fmt.Sprintf("--dns=127.0.0.1:%d", dns), "--egress-domain=allow=allowed.moat.test").in(t)
		id := hold(e)
		target := fmt.Sprintf("%s:%d", ha, open)
		if r := dial(e, id, target); !refused(r) {
			t.Errorf("address reached before any allowed name resolved to it: %+v", r)
		}
		var d dnsResult
		execJSON(e, &d, []string{id}, "dns", gateway, "other.moat.test", "A")
		if d.Rcode != 5 || len(d.Answers) != 0 {
			t.Errorf("name outside the allowlist: %+v; want REFUSED", d)
		}
		if r := dial(e, id, target); !refused(r) {
			t.Errorf("address reachable after resolving a name outside the allowlist: %+v", r)
		}
		execJSON(e, &d, []string{id}, "dns", gateway, "allowed.moat.test", "A")
		if d.Rcode != 0 || len(d.Answers) != 1 || d.Answers[0].Data != ha {
			t.Fatalf("allowed name: %+v", d)
		}
		if r := dial(e, id, target); !r.OK || r.Data != "hi open\n" {
			t.Errorf("address resolved for an allowed name: %+v", r)
		}
	})
}

func TestSandboxShortConnections(t *testing.T) {
	port := greeter(t, "127.0.0.1:0", "x")
	e := netEnv(t, "--allow-host-loopback")
	id := hold(e)
	var r struct {
		OK, Failed int
		Error      string
		MS         int64
	}
	execJSON(e, &r, []string{id}, "conns", fmt.Sprintf("%s:%d", gateway, port), "2000")
	if r.OK != 2000 || r.Failed != 0 {
		t.Errorf("2000 short connections: %+v", r)
	}
	t.Logf("2000 connections in %d ms", r.MS)
}

func TestNetworkModes(t *testing.T) {
	e := newEnv(t)
	hostNet := ns(t, os.Getpid(), "net")
	link := []string{"readlink", "/proc/self/ns/net"}
	noNetNS := func(s *specsSpec) {
		var keep []specsNamespace
		for _, n := range s.Linux.Namespaces {
			if n.Type != "network" {
				keep = append(keep, n)
			}
		}
		s.Linux.Namespaces = keep
		withoutCgroupMount(s)
	}
	if out := strings.TrimSpace(e.runProbe(link, noNetNS)); out != hostNet {
		t.Errorf("auto, spec without a network namespace: %s, want the host's %s", out, hostNet)
	}
	none := *e
	none.globals = append(append([]string{}, e.globals...), "--network=none")
	if out := strings.TrimSpace(none.runProbe(link, noNetNS)); out == hostNet {
		t.Error("--network=none left the container in the host's network namespace")
	}
	if out := none.runProbe([]string{"ls", "/sys/class/net"}, noNetNS); out != "lo\n" {
		t.Errorf("--network=none interfaces: %q", out)
	}
	host := *e
	host.globals = append(append([]string{}, e.globals...), "--network=host")
	if out := strings.TrimSpace(host.runProbe(link, withoutCgroupMount)); out != hostNet {
		t.Errorf("--network=host: %s, want the host's %s", out, hostNet)
	}
	b := host.newBundle([]string{"true"}, func(s *specsSpec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} })
	host.fails("would change the host", "run", "--bundle", b.dir, host.id())
	// Per container, by annotation.
	ann := func(s *specsSpec) { s.Annotations = map[string]string{"moat.network": "sandbox"} }
	if out := e.runProbe([]string{"ls", "/sys/class/net"}, ann); out != "lo\ntap0\n" {
		t.Errorf("moat.network=sandbox annotation: interfaces %q", out)
	}
}

// TestNetworkJoined: a namespace joined by path is left alone, whatever
// --network says.
func TestNetworkJoined(t *testing.T) {
	// Rootless, another container's namespace belongs to its own user
	// namespace, and its init is not dumpable: only root can join it.
	needRoot(t, "joins another container's network namespace")
	e := newEnv(t)
	link := []string{"readlink", "/proc/self/ns/net"}
	none := *e
	none.globals = append(append([]string{}, e.globals...), "--network=none")
	id := hold(&none)
	pid := initPidOf(&none, id)
	sb := *e
	sb.globals = append(append([]string{}, e.globals...), "--network=sandbox")
	join := func(s *specsSpec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == "network" {
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/net", pid)
			}
		}
	}
	if out := strings.TrimSpace(sb.runProbe(link, join)); out != ns(t, pid, "net") {
		t.Errorf("joined namespace: %s, want %s", out, ns(t, pid, "net"))
	}
	if out := sb.runProbe([]string{"ls", "/sys/class/net"}, join); out != "lo\n" {
		t.Errorf("--network=sandbox changed a joined namespace: %q", out)
	}
}

func TestNetworkBadInput(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	e.fails("need --network=sandbox", "--publish=8080:80", "run", "--bundle", b.dir, e.id())
	e.fails("want auto, none, host or sandbox", "--network=bridge", "run", "--bundle", b.dir, e.id())
	e.fails("want [hostIP:]hostPort:containerPort", "--network=sandbox", "--publish=8080", "run", "--bundle", b.dir, e.id())
	e.fails("allow or deny", "--network=sandbox", "--egress=permit=10.0.0.0/8", "run", "--bundle", b.dir, e.id())
	// A host port in use fails create and leaves nothing behind.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	e.fails("address already in use", "--network=sandbox", fmt.Sprintf("--publish=127.0.0.1:%d:80", busy), "run", "--bundle", b.dir, e.id())
	if out := e.moat("list", "-q"); out != "" {
		t.Errorf("failed create left containers: %q", out)
	}
}

// withoutCgroupMount drops the spec's cgroup mount. Rootless on a hybrid
// cgroup host, a container in the host's network namespace gets the host's
// /sys (it may not mount sysfs), over which the cgroup v1 mounts fail with
// EBUSY: a limitation of its own, not the network's.
func withoutCgroupMount(s *specsSpec) {
	var keep []specs.Mount
	for _, m := range s.Mounts {
		if m.Destination != "/sys/fs/cgroup" {
			keep = append(keep, m)
		}
	}
	s.Mounts = keep
}

// TestSandboxSpecUserNamespace: as root, with the spec's own user namespace,
// the container's root (a host id with no rights on root's state
// directories) still gets its generated /etc files and the TAP device.
func TestSandboxSpecUserNamespace(t *testing.T) {
	needRoot(t, "the spec's own user namespace as root")
	e := netEnv(t)
	must(t, os.Chmod(e.dir, 0o755)) // container root is host uid 200000: traverse to the bundle
	b := e.newBundle([]string{"cat", "/etc/resolv.conf", "/sys/class/net/tap0/mtu"}, func(s *specsSpec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	})
	must(t, os.Chmod(b.dir, 0o755))
	// The mount points exist: the image is root's, not the mapped root's.
	for _, f := range []string{"etc/resolv.conf", "etc/hosts", "etc/hostname"} {
		must(t, os.WriteFile(filepath.Join(b.rootfs(), f), nil, 0o644))
	}
	out := e.moat("run", "--bundle", b.dir, e.id())
	if !strings.Contains(out, "nameserver 10.0.2.2\n") || !strings.HasSuffix(out, "65520\n") {
		t.Errorf("container output %q", out)
	}
	st, err := os.Stat(e.root)
	must(t, err)
	if st.Mode().Perm()&0o066 != 0 {
		t.Errorf("state root mode %o: readable or writable by others", st.Mode().Perm())
	}
}

// TestSandboxRunLogs: a foreground run without --log shows boot's warnings
// and denials on its stderr (boot.log would go with the container, unread);
// normal teardown logs nothing at warning level, there or in --log.
func TestSandboxRunLogs(t *testing.T) {
	e := netEnv(t, "--egress=allow=192.0.2.1/32:9")
	denied := e.newBundle([]string{"dial", "198.51.100.7:80", "2"})
	r := e.run(nil, "run", "--bundle", denied.dir, e.id())
	want := "sandbox network: egress denied: tcp 198.51.100.7:80 (not in the egress allowlist)"
	if r.code != 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("foreground run: want %q on stderr\n%s", want, r)
	}
	if n := strings.Count(r.stderr, "\n"); n != 1 {
		t.Errorf("foreground run: %d lines on stderr, want the denial alone:\n%s", n, r.stderr)
	}
	plain := e.newBundle([]string{"true"})
	if r := e.run(nil, "run", "--bundle", plain.dir, e.id()); r.code != 0 || r.stderr != "" {
		t.Errorf("normal run and teardown wrote to stderr:\n%s", r)
	}
	logFile := filepath.Join(e.dir, "moat.log")
	logged := e.in(t)
	logged.globals = append(append([]string{}, e.globals...), "--log="+logFile)
	logged.moat("run", "--bundle", plain.dir, e.id())
	if data, err := os.ReadFile(logFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	} else if len(data) != 0 {
		t.Errorf("normal run and teardown logged:\n%s", data)
	}
}

// udpEchoHost echoes every datagram on addr (the test's namespace) until the
// test ends; it returns the port.
func udpEchoHost(t *testing.T, addr string, answer bool) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	must(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if answer {
				pc.WriteTo(buf[:n], from)
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// bootPid is the container's moat boot (its init's parent).
func bootPid(t *testing.T, e *env, id string) int {
	t.Helper()
	ppid := 0
	status := readTrim(t, fmt.Sprintf("/proc/%d/status", initPidOf(e, id)))
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			fmt.Sscan(v, &ppid)
		}
	}
	if ppid <= 1 {
		t.Fatalf("no parent in %s", status)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
	must(t, err)
	if !strings.Contains(string(cmdline), "\x00boot\x00") {
		t.Fatalf("init's parent %d is not moat boot: %q", ppid, cmdline)
	}
	return ppid
}

// procMemory is the current and peak resident memory (VmRSS, VmHWM, KiB)
// of a process.
func procMemory(t *testing.T, pid int) (rss, hwm int) {
	t.Helper()
	status := readTrim(t, fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			fmt.Sscan(v, &rss)
		}
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			fmt.Sscan(v, &hwm)
		}
	}
	return rss, hwm
}

// TestSandboxFloodMemory: floods from inside the container (UDP flows with
// large datagrams echoed back, DNS queries to a resolver that never
// answers) leave moat boot's peak resident memory within a bound. Memory is
// measured (VmHWM), never time.
func TestSandboxFloodMemory(t *testing.T) {
	echo := udpEchoHost(t, "127.0.0.1:0", true)
	silent := udpEchoHost(t, "127.0.0.1:0", false)
	sink := tcpSink(t)
	e := netEnv(t, "--allow-host-loopback", fmt.Sprintf("--dns=127.0.0.1:%d", silent))
	id := hold(e)
	netPid := netProcPid(t, e, id)
	idle, _ := procMemory(t, netPid)
	var r struct {
		Sent    int    `json:"sent"`
		Answers int    `json:"answers"`
		Bytes   int64  `json:"bytes"`
		Error   string `json:"error"`
	}
	execJSON(e, &r, []string{id}, "flood", "udp", fmt.Sprintf("%s:%d", gateway, echo), "6000", "60000")
	if r.Sent != 6000 || r.Error != "" {
		t.Fatalf("udp flood: %+v", r)
	}
	_, udpPeak := procMemory(t, netPid)
	execJSON(e, &r, []string{id}, "flood", "dns", gateway+":53", "20000")
	if r.Sent != 20000 || r.Error != "" {
		t.Fatalf("dns flood: %+v", r)
	}
	_, dnsPeak := procMemory(t, netPid)
	bootRSS, _ := procMemory(t, bootPid(t, e, id))
	// In a container of its own (VmHWM is the process's peak): 400
	// connections to a server that never reads, each written to until it
	// blocks, so that every buffer on the way fills (issue 17: up to 8 MiB
	// of netstack buffer per direction, and 768 KiB of copy buffers, each).
	id2 := hold(e)
	netPid2 := netProcPid(t, e, id2)
	idle2, _ := procMemory(t, netPid2)
	execJSON(e, &r, []string{id2}, "flood", "tcp", fmt.Sprintf("%s:%d", gateway, sink), "400")
	if r.Sent != 400 || r.Error != "" {
		t.Fatalf("tcp flood: %+v", r)
	}
	_, tcpPeak := procMemory(t, netPid2)
	t.Logf("moat net: idle RSS %d KiB; peak after 6000 UDP flows of 60 KB datagrams %d KiB; after 20000 DNS queries %d KiB; "+
		"in another container, idle %d KiB, peak after 400 stalled TCP connections (%d MiB written) %d KiB (moat boot: %d KiB)",
		idle, udpPeak, dnsPeak, idle2, r.Bytes>>20, tcpPeak, bootRSS)
	// The net process's soft memory limit is 64 MiB
	// (network.SupervisorMemoryLimit); before the bounds, the UDP and DNS
	// floods took it past 270 and 380 MiB, the TCP flood past 700 MiB.
	// Measured 55-84 MiB on a loaded 2-core machine (the collector's pace
	// under the 64 MiB soft limit varies); 128 MiB keeps the test from
	// flaking and still fails at the old figures.
	const bound = 128 << 10 // KiB above idle
	if dnsPeak-idle > bound || udpPeak-idle > bound || tcpPeak-idle2 > bound {
		t.Errorf("floods grew moat net by %d KiB (udp), %d KiB (dns in all), %d KiB (tcp), over the bound of %d KiB", udpPeak-idle, dnsPeak-idle, tcpPeak-idle2, bound)
	}
}

// tcpSink accepts TCP connections on 127.0.0.1 and never reads them; it
// returns the port.
func tcpSink(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostAddresses lists every address `ip addr` shows in the test's network
// namespace.
func hostAddresses(t *testing.T) []netip.Addr {
	t.Helper()
	out, err := exec.Command("ip", "-o", "addr", "show").Output()
	must(t, err)
	var addrs []netip.Addr
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil {
					addrs = append(addrs, p.Addr())
				}
			}
		}
	}
	if len(addrs) == 0 {
		t.Fatalf("ip addr listed no address:\n%s", out)
	}
	return addrs
}

// TestSandboxHostAddresses: a host service listening on 0.0.0.0 is closed
// to the container at every address of the host (`ip addr`: loopback, eth0,
// bridges; IPv6 too, which the IPv4-only sandbox cannot reach at all), over
// TCP and UDP, without --allow-host-loopback, as 10.0.2.2 is; and so is an
// address added to the host after the container started. With the flag
// the host's IPv4 addresses are reachable.
func TestSandboxHostAddresses(t *testing.T) {
	port := greeter(t, "0.0.0.0:0", "host")
	uport := udpEchoHost(t, "0.0.0.0:0", true) // its own port: the TCP one may be taken for UDP
	closed := netEnv(t)
	cid := hold(closed)
	open := netEnv(t, "--allow-host-loopback")
	oid := hold(open)
	try := func(e *env, id string, a netip.Addr) (tcp, udp dialResult) {
		execJSON(e, &tcp, []string{id}, "dial", net.JoinHostPort(a.String(), fmt.Sprint(port)), "5")
		execJSON(e, &udp, []string{id}, "udp", net.JoinHostPort(a.String(), fmt.Sprint(uport)), "x")
		return tcp, udp
	}
	check := func(t *testing.T, addrs []netip.Addr) {
		t.Helper()
		for _, a := range addrs {
			tcp, udp := try(closed, cid, a)
			if tcp.OK || udp.OK {
				t.Errorf("host address %v reachable without --allow-host-loopback: tcp %+v, udp %+v", a, tcp, udp)
			}
			if a.Is4() && !a.IsLoopback() && tcp.Name != "ECONNREFUSED" {
				t.Errorf("host address %v: tcp %+v; want an immediate refusal", a, tcp)
			}
			if !a.Is4() || a.IsLoopback() || a.IsLinkLocalUnicast() {
				continue // the container's own loopback; IPv6 and link-local: never
			}
			if tcp, udp := try(open, oid, a); tcp.Data != "hi host\n" || udp.Data != "x" {
				t.Errorf("host address %v with --allow-host-loopback: tcp %+v, udp %+v", a, tcp, udp)
			}
		}
	}
	check(t, hostAddresses(t))
	t.Run("added-later", func(t *testing.T) {
		needRoot(t, "adds an interface to the host")
		// A veth pair: kernels without the dummy module have it.
		if out, err := exec.Command("ip", "link", "add", "moate2e0", "type", "veth", "peer", "name", "moate2e1").CombinedOutput(); err != nil {
			t.Fatalf("ip link add: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "link", "del", "moate2e0").Run() })
		for _, args := range [][]string{{"addr", "add", "198.18.99.1/24", "dev", "moate2e0"}, {"link", "set", "moate2e0", "up"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
		check(t, []netip.Addr{netip.MustParseAddr("198.18.99.1")})
	})
}
