package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// refusedFast asserts that connecting from the container fails with
// ECONNREFUSED well before any timeout.
func refusedFast(t *testing.T, c *ctr, network, addr string) {
	t.Helper()
	start := time.Now()
	conn, err := c.dial(network, addr, 5*time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s %s: connected, want refused", network, addr)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s %s: %v, want ECONNREFUSED", network, addr, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("%s %s: refusal took %v", network, addr, d)
	}
}

// roundTrip connects from the container, sends one byte and expects it back.
func roundTrip(c *ctr, addr string) error {
	return c.in(func() error { return roundTripHere(addr) })
}

// roundTripHere is roundTrip from the calling thread's namespace.
func roundTripHere(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return err
	}
	return nil
}

func TestHostLoopback(t *testing.T) {
	ln := hostListen(t, "127.0.0.1:0")
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	}))
	url := fmt.Sprintf("http://10.0.2.2:%d/", portOf(ln.Addr()))

	t.Run("denied by default", func(t *testing.T) {
		c := newCtr(t, Config{})
		refusedFast(t, c, "tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/"), "http://"))
		if n := c.logs.count("host loopback not allowed"); n != 1 {
			t.Errorf("denial logged %d times, want 1", n)
		}
	})
	t.Run("allowed", func(t *testing.T) {
		c := newCtr(t, Config{AllowHostLoopback: true})
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
				return c.dial(network, addr, 5*time.Second)
			},
		}}
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello 127.0.0.1:") {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
}

func TestForwardTCP(t *testing.T) {
	c := newCtr(t, Config{})
	ln := c.listen(t, "0.0.0.0:8080")
	serve(ln, func(conn net.Conn) { fmt.Fprintf(conn, "%s", conn.RemoteAddr()) })
	if err := c.sb.AddForward(Forward{Proto: TCP, HostAddr: netip.MustParseAddrPort("0.0.0.0:0"), ContainerPort: 8080}); err != nil {
		t.Fatal(err)
	}
	port := c.forwardPort(t, TCP, 8080)
	seen := func(local netip.Addr, target netip.Addr) string {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
		conn, err := d.Dial("tcp", addrPort(target, port))
		if err != nil {
			t.Fatalf("dial forward: %v", err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("read forward: %v", err)
		}
		ap, _ := netip.ParseAddrPort(string(b))
		return ap.Addr().String()
	}
	if got := seen(loopAdr, loopAdr); got != "10.0.2.2" {
		t.Errorf("loopback client seen as %q, want the gateway 10.0.2.2", got)
	}
	if got := seen(hostB, hostA); got != hostB.String() {
		t.Errorf("non-loopback client %v seen as %q (source IP not preserved)", hostB, got)
	}
	fwds := c.sb.Forwards()
	if len(fwds) != 1 {
		t.Fatalf("Forwards() = %v", fwds)
	}
	if err := c.sb.RemoveForward(fwds[0]); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addrPort(loopAdr, port), time.Second); err == nil {
		conn.Close()
		t.Error("forward still listening after RemoveForward")
	}
	if len(c.sb.Forwards()) != 0 {
		t.Error("Forwards() not empty after RemoveForward")
	}
}

func TestForwardUDP(t *testing.T) {
	c := newCtr(t, Config{})
	pc := c.listenPacket(t, "udp", "0.0.0.0:5353")
	go func() { // echo "<data> from <source>"
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(fmt.Sprintf("%s from %s", buf[:n], from.(*net.UDPAddr).IP)), from)
		}
	}()
	if err := c.sb.AddForward(Forward{Proto: UDP, HostAddr: netip.MustParseAddrPort("0.0.0.0:0"), ContainerPort: 5353}); err != nil {
		t.Fatal(err)
	}
	port := c.forwardPort(t, UDP, 5353)
	for _, tc := range []struct {
		local, target netip.Addr
		want          string
	}{
		{loopAdr, loopAdr, "10.0.2.2"},
		{hostB, hostA, hostB.String()},
	} {
		conn, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.local, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.target, port)))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		for i := 0; i < 3; i++ { // several datagrams on one flow
			conn.Write([]byte(fmt.Sprint("ping", i)))
			buf := make([]byte, 2048)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("client %v: %v (logs %q)", tc.local, err, c.logs.lines)
			}
			if want := fmt.Sprintf("ping%d from %s", i, tc.want); string(buf[:n]) != want {
				t.Errorf("got %q, want %q", buf[:n], want)
			}
		}
		conn.Close()
	}
}

func TestEgressRules(t *testing.T) {
	a1, a2 := remoteListen(t, addrPort(remoteA, 0)), remoteListen(t, addrPort(remoteA, 0))
	c1 := remoteListen(t, addrPort(remoteC, portOf(a1.Addr())))
	for _, ln := range []net.Listener{a1, a2, c1} {
		serve(ln, echoOne)
	}
	p1, p2 := portOf(a1.Addr()), portOf(a2.Addr())
	rules, err := ParseEgress(fmt.Sprintf("deny=%v/24,deny=%v:%d", remoteC, remoteA, p2))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("denylist", func(t *testing.T) {
		c := newCtr(t, Config{Egress: Policy{Rules: rules}})
		if err := roundTrip(c, addrPort(remoteA, p1)); err != nil {
			t.Errorf("allowed destination: %v", err)
		}
		refusedFast(t, c, "tcp", addrPort(remoteA, p2))
		refusedFast(t, c, "tcp", addrPort(remoteC, p1))
		refusedFast(t, c, "tcp", "169.254.169.254:80")
		refusedFast(t, c, "tcp", addrPort(remoteC, p1)) // again: logged once
		if n := c.logs.count(fmt.Sprintf("tcp %v:%d", remoteC, p1)); n != 1 {
			t.Errorf("denial of %v:%d logged %d times, want 1", remoteC, p1, n)
		}
	})
	t.Run("allowlist", func(t *testing.T) {
		rules, err := ParseEgress(fmt.Sprintf("allow=%v/24:%d,allow=0.0.0.0/0:1-1", remoteA, p1))
		if err != nil {
			t.Fatal(err)
		}
		c := newCtr(t, Config{Egress: Policy{Rules: rules}})
		if err := roundTrip(c, addrPort(remoteA, p1)); err != nil {
			t.Errorf("allowed destination: %v", err)
		}
		refusedFast(t, c, "tcp", addrPort(remoteA, p2))
		refusedFast(t, c, "tcp", addrPort(remoteC, p1))
	})
	t.Run("link-local always blocked", func(t *testing.T) {
		c := newCtr(t, Config{Egress: Policy{Rules: []Rule{{Allow: true, Prefix: netip.MustParsePrefix("0.0.0.0/0")}}}})
		refusedFast(t, c, "tcp", "169.254.169.254:80")
		refusedFast(t, c, "tcp", "10.0.2.3:80") // the sandbox subnet
	})
	t.Run("cloud metadata always blocked", func(t *testing.T) {
		c := newCtr(t, Config{AllowHostLoopback: true, Egress: Policy{Rules: []Rule{{Allow: true, Prefix: netip.MustParsePrefix("0.0.0.0/0")}}}})
		for _, m := range []string{"168.63.129.16", "100.100.100.200", "192.0.0.192"} {
			refusedFast(t, c, "tcp", m+":80")
			if err := udpTry(c, m+":53"); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("udp %s: %v, want ECONNREFUSED", m, err)
			}
			if n := c.logs.count(fmt.Sprintf("(blocked range %s/32)", m)); n != 2 {
				t.Errorf("%s: %d denials logged as a blocked range, want 2 (tcp, udp): %q", m, n, c.logs.lines)
			}
		}
	})
}

func TestEgressUDP(t *testing.T) {
	needHostsim(t)
	port := udpEcho(t, remote, addrPort(remoteA, 0))
	c := newCtr(t, Config{Egress: Policy{Rules: []Rule{{Prefix: netip.PrefixFrom(remoteC, 32)}}}})
	if err := udpTry(c, addrPort(remoteA, port)); err != nil {
		t.Errorf("allowed UDP: %v", err)
	}
	start := time.Now()
	if err := udpTry(c, addrPort(remoteC, port)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("denied UDP: %v, want ECONNREFUSED (ICMP unreachable)", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("denied UDP took %v", d)
	}
}

func TestEgressDomains(t *testing.T) {
	dns := startTestDNS(t, testRecords)
	ln := remoteListen(t, addrPort(remoteA, 0))
	serve(ln, echoOne)
	lnC := remoteListen(t, addrPort(remoteC, portOf(ln.Addr())))
	serve(lnC, echoOne)
	c := newCtr(t, Config{DNSServers: []netip.AddrPort{dns.addr}, Egress: Policy{Domains: []string{"*.allowed.test"}}})
	target := addrPort(remoteA, portOf(ln.Addr()))
	refusedFast(t, c, "tcp", target) // not resolved yet
	if resp := c.query(t, false, 1, "www.allowed.test", dnsTypeA); rcode(resp) != 0 {
		t.Fatalf("rcode %d", rcode(resp))
	}
	if err := roundTrip(c, target); err != nil {
		t.Errorf("resolved allowed name: %v", err)
	}
	if resp := c.query(t, false, 2, "www.denied.test", dnsTypeA); rcode(resp) != rcodeRefused {
		t.Errorf("denied name: rcode %d", rcode(resp))
	}
	refusedFast(t, c, "tcp", addrPort(remoteC, portOf(ln.Addr())))
}

func TestShortConnections(t *testing.T) {
	ln := remoteListen(t, addrPort(remoteA, 0))
	serve(ln, echoOne)
	c := newCtr(t, Config{})
	target := addrPort(remoteA, portOf(ln.Addr()))
	const n = 2000
	start := time.Now()
	err := c.in(func() error {
		// A narrow ephemeral range makes the container reuse source
		// ports within a few seconds, as a busy client does, so reused
		// 4-tuples meet the gateway's TIME_WAIT. With gVisor's default
		// 60 s this fails within a few hundred connections (research
		// §3.3); with the 1 s we set, none fail.
		const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range" // this thread's netns
		if err := os.WriteFile(rangeFile, []byte("20000 29999"), 0o644); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			if err := roundTripHere(target); err != nil {
				return fmt.Errorf("connection %d of %d: %w", i+1, n, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("%d sequential connections in %v (%.0f conn/s)", n, d, n/d.Seconds())
}

// ping sends one echo request from the container (raw socket) and returns
// the ICMP type and code of the answer.
func ping(t *testing.T, c *ctr, dst string) (int, int, error) {
	t.Helper()
	pc := c.listenPacket(t, "ip4:icmp", "0.0.0.0")
	msg := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'm', 'o', 'a', 't'}
	cs := icmpChecksum(msg)
	msg[2], msg[3] = byte(cs>>8), byte(cs)
	if _, err := pc.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		return 0, 0, err
	}
	pc.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return 0, 0, err
		}
		if n >= 8 && buf[0] != 8 { // not our own request
			if buf[0] == 0 && (buf[4] != 0x12 || buf[5] != 0x34 || string(buf[8:n]) != "moat") {
				return 0, 0, fmt.Errorf("echo reply mangled: % x", buf[:n])
			}
			return int(buf[0]), int(buf[1]), nil
		}
	}
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestICMPEcho(t *testing.T) {
	const rangeFile = "/proc/sys/net/ipv4/ping_group_range" // hostsim's own
	orig, err := os.ReadFile(rangeFile)
	if err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(rangeFile, orig, 0o644)
	c := newCtr(t, Config{})
	if typ, _, err := ping(t, c, "10.0.2.2"); err != nil || typ != 0 {
		t.Errorf("ping gateway: type %d, %v", typ, err)
	}
	if typ, code, err := ping(t, c, "169.254.1.1"); err != nil || typ != 3 || code != 13 {
		t.Errorf("ping link-local: type %d code %d, %v; want admin prohibited", typ, code, err)
	}
	if err := os.WriteFile(rangeFile, []byte("1 0"), 0o644); err != nil {
		t.Fatal(err)
	}
	if typ, code, err := ping(t, c, remoteA.String()); err != nil || typ != 3 || code != 1 {
		t.Errorf("ping without ICMP sockets: type %d code %d, %v; want host unreachable", typ, code, err)
	}
	if err := os.WriteFile(rangeFile, []byte("0 2147483647"), 0o644); err != nil {
		t.Fatal(err)
	}
	if typ, _, err := ping(t, c, remoteA.String()); err != nil || typ != 0 {
		t.Errorf("proxied ping: type %d, %v", typ, err)
	}
}

func TestCloseReleases(t *testing.T) {
	needHostsim(t)
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(probe.Addr())
	probe.Close()
	fwd := Forward{Proto: TCP, HostAddr: netip.AddrPortFrom(loopAdr, port), ContainerPort: 9000}
	base := runtime.NumGoroutine()
	for round := 0; round < 2; round++ {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			c := newCtr(t, Config{})
			serve(c.listen(t, "0.0.0.0:9000"), echoOne)
			if err := c.sb.AddForward(fwd); err != nil {
				t.Fatalf("AddForward on a port the previous sandbox used: %v", err)
			}
			conn, err := net.DialTimeout("tcp", fwd.HostAddr.String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close() // left open on purpose: Close must cut it
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.Write([]byte{1})
			if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := c.sb.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Close took %v", d)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestNoTunDevice(t *testing.T) {
	needHostsim(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := reexec.Command(ctx, roleNoTun, "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "unusable=true") || !strings.Contains(s, "chmod 0666 /dev/net/tun") ||
		!strings.Contains(s, "--network=none/host") {
		t.Errorf("error does not explain /dev/net/tun: %s", s)
	}
}

// Established TCP connections are bounded: past the bound a new one is
// refused (and the refusal logged once), and a connection that ends frees
// its place.
func TestTCPConnectionsBounded(t *testing.T) {
	old := maxTCPConns
	maxTCPConns = 3
	defer func() { maxTCPConns = old }()
	ln := remoteListen(t, addrPort(remoteA, 0))
	serve(ln, func(c net.Conn) { io.Copy(io.Discard, c) }) // held until the client closes
	c := newCtr(t, Config{})
	target := addrPort(remoteA, portOf(ln.Addr()))
	var held []net.Conn
	for i := 0; i < 3; i++ {
		conn, err := c.dial("tcp", target, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		held = append(held, conn)
	}
	for i := 0; i < 2; i++ {
		conn, err := c.dial("tcp", target, 5*time.Second)
		if err == nil {
			conn.Close()
			t.Fatal("a fourth connection was proxied past the bound of 3")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("past the bound: %v, want ECONNREFUSED", err)
		}
	}
	if n := c.logs.count("TCP connections open"); n != 1 {
		t.Errorf("the full table was logged %d times, want 1", n)
	}
	held[0].Close()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var conn net.Conn
		if conn, err = c.dial("tcp", target, 5*time.Second); err == nil {
			conn.Close()
			break
		}
	}
	if err != nil {
		t.Errorf("after one connection ended: %v, want its place free", err)
	}
	for _, conn := range held[1:] {
		conn.Close()
	}
}

// udpEcho serves UDP echo on addr in the calling thread's namespace (nil
// ns: hostsim) until the test ends, and returns its port.
func udpEcho(t *testing.T, ns *ctr, addr string) uint16 {
	t.Helper()
	var pc net.PacketConn
	if ns != nil {
		pc = ns.listenPacket(t, "udp4", addr)
	} else {
		var err error
		if pc, err = net.ListenPacket("udp4", addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return portOf(pc.LocalAddr())
}

// udpTry sends one datagram from the container and waits for the echo.
func udpTry(c *ctr, addr string) error {
	conn, err := c.dial("udp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	conn.Write([]byte("hi"))
	_, err = conn.Read(make([]byte, 16))
	return err
}

// ipHost runs iproute2's ip in hostsim.
func ipHost(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// The host's own addresses (lo's extra ones, the veth's, an address added on a new interface
// after the sandbox started, a local route) are as closed as the gateway
// without AllowHostLoopback, over TCP and UDP, to a service listening on
// 0.0.0.0; with it they are reachable.
func TestHostAddressesClosed(t *testing.T) {
	needHostsim(t)
	ln := hostListen(t, "0.0.0.0:0")
	serve(ln, echoOne)
	port := portOf(ln.Addr())
	uport := udpEcho(t, nil, fmt.Sprintf("0.0.0.0:%d", port))
	closedC := newCtr(t, Config{})
	openC := newCtr(t, Config{AllowHostLoopback: true})
	// Added after both sandboxes started.
	ipHost(t, "link", "add", "moatnew0", "type", "veth", "peer", "name", "moatnew1")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "moatnew0").Run() })
	ipHost(t, "addr", "add", "198.18.7.1/24", "dev", "moatnew0")
	ipHost(t, "link", "set", "moatnew0", "up")
	ipHost(t, "route", "add", "local", "198.19.0.0/24", "dev", "lo")
	t.Cleanup(func() { exec.Command("ip", "route", "del", "local", "198.19.0.0/24", "dev", "lo").Run() })
	for _, a := range []string{hostA.String(), hostB.String(), hostVeth.String(), "198.18.7.1", "198.18.7.255", "198.19.0.9"} {
		refusedFast(t, closedC, "tcp", fmt.Sprintf("%s:%d", a, port))
		if err := udpTry(closedC, fmt.Sprintf("%s:%d", a, uport)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("udp %s: %v, want ECONNREFUSED", a, err)
		}
		if a == "198.18.7.255" {
			continue // a broadcast address: closed, and no host socket would reach it anyway
		}
		if err := roundTrip(openC, fmt.Sprintf("%s:%d", a, port)); err != nil {
			t.Errorf("tcp %s with AllowHostLoopback: %v", a, err)
		}
		if err := udpTry(openC, fmt.Sprintf("%s:%d", a, uport)); err != nil {
			t.Errorf("udp %s with AllowHostLoopback: %v", a, err)
		}
	}
	if n := closedC.logs.count("an address of the host"); n == 0 {
		t.Errorf("no denial logged: %q", closedC.logs.lines)
	}
	// A remote host is not the host.
	rln := remoteListen(t, addrPort(remoteA, 0))
	serve(rln, echoOne)
	if err := roundTrip(closedC, addrPort(remoteA, portOf(rln.Addr()))); err != nil {
		t.Errorf("remote host: %v", err)
	}
}

// A full UDP flow table evicts the flow idle longest: the new flow works,
// the evicted one is gone (its next datagram makes a new flow), and the
// eviction is logged once.
func TestUDPFlowEviction(t *testing.T) {
	needHostsim(t)
	old := maxUDPFlows
	maxUDPFlows = 2
	defer func() { maxUDPFlows = old }()
	port := udpEcho(t, remote, addrPort(remoteA, 0))
	c := newCtr(t, Config{})
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		conn, err := c.dial("udp", addrPort(remoteA, port), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		conn.Write([]byte("hi"))
		if _, err := conn.Read(make([]byte, 16)); err != nil {
			t.Fatalf("flow %d: %v", i+1, err)
		}
		conns = append(conns, conn)
		time.Sleep(10 * time.Millisecond) // distinct idle times
	}
	c.sb.mu.Lock()
	n := len(c.sb.udpFlows)
	c.sb.mu.Unlock()
	if n != 2 {
		t.Errorf("%d flows in a table of 2", n)
	}
	if n := c.logs.count("UDP flows open"); n != 1 {
		t.Errorf("eviction logged %d times, want 1", n)
	}
	// The evicted flow's socket still gets answers: a new flow.
	conns[0].SetDeadline(time.Now().Add(3 * time.Second))
	conns[0].Write([]byte("again"))
	if _, err := conns[0].Read(make([]byte, 16)); err != nil {
		t.Errorf("evicted flow's next datagram: %v", err)
	}
}
