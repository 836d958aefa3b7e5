package network

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestIperf3 is the network benchmark (`make bench-net`): TCP throughput
// measured with iperf3 (separate processes, as in the research notes) and the
// short-connection rate, through the sandbox network and through slirp4netns
// in the same namespaces when it is installed. Opt-in, it takes ~40 s:
//
//	MOAT_NET_IPERF3=1 go test -run TestIperf3 -v ./internal/network/
func TestIperf3(t *testing.T) {
	if os.Getenv("MOAT_NET_IPERF3") == "" {
		t.Skip("set MOAT_NET_IPERF3=1")
	}
	needHostsim(t)
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skip("iperf3 not installed")
	}
	startProc(t, remote, "iperf3", "-s", "-B", remoteA.String(), "-p", "15201")
	greetServer(t, addrPort(remoteA, connRatePort))
	if err := remote.in(func() error { return waitListen(addrPort(remoteA, 15201)) }); err != nil {
		t.Fatal(err)
	}

	c := newCtr(t, Config{})
	if err := c.sb.AddForward(Forward{Proto: TCP, HostAddr: netip.MustParseAddrPort("127.0.0.1:25201"), ContainerPort: 5201}); err != nil {
		t.Fatal(err)
	}
	t.Logf("moat:        %s", iperfSet(t, c, 25201))

	if _, err := exec.LookPath("slirp4netns"); err != nil {
		t.Log("slirp4netns not installed: no comparison")
		return
	}
	s := slirpCtr(t)
	t.Logf("slirp4netns: %s", iperfSet(t, s, 35201))
}

// iperfSet runs out_send, out_recv (container client) and in_fwd (host
// client through hostPort -> container 5201), 4 s each.
func iperfSet(t *testing.T, c *ctr, hostPort int) string {
	send := iperfClient(t, c, "-c", remoteA.String(), "-p", "15201")
	recv := iperfClient(t, c, "-c", remoteA.String(), "-p", "15201", "-R")
	startProc(t, c, "iperf3", "-s", "-p", "5201")
	if err := c.in(func() error { return waitListen("127.0.0.1:5201") }); err != nil {
		t.Fatal(err)
	}
	in := iperfClient(t, nil, "-c", "127.0.0.1", "-p", fmt.Sprint(hostPort))
	rate := connRate(t, c, addrPort(remoteA, connRatePort), 3*time.Second)
	return fmt.Sprintf("out_send %.2f Gbps, out_recv %.2f Gbps, in_fwd %.2f Gbps, short connections %.0f/s", send, recv, in, rate)
}

// connRatePort is the host's greeting server for connRate.
const connRatePort = 15202

// greetServer answers each connection on addr (in the remote namespace) with one byte and closes it.
func greetServer(t *testing.T, addr string) {
	t.Helper()
	ln := remoteListen(t, addr) // the remote host's
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{1})
			c.Close()
		}
	}()
}

// connRate makes connections in a row from c's namespace for d (connect,
// read the greeting, close) and returns connections per second; a failure
// fails the test.
func connRate(t *testing.T, c *ctr, addr string, d time.Duration) float64 {
	t.Helper()
	n := 0
	err := c.in(func() error {
		buf := make([]byte, 1)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", n+1, err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(buf)
			conn.Close()
			if err != nil {
				return fmt.Errorf("connection %d: %w", n+1, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return float64(n) / d.Seconds()
}

// startProc starts a command, in c's network namespace when c is not nil.
func startProc(t *testing.T, c *ctr, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	// No Pdeathsig: it fires when the forking thread exits, and the
	// namespace threads of ctr.in exit at once. Cleanup kills instead.
	start := func() error { return cmd.Start() }
	var err error
	if c != nil {
		err = c.in(start) // forked from the namespace's thread
	} else {
		err = start()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func iperfClient(t *testing.T, c *ctr, args ...string) float64 {
	t.Helper()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	// The iperf3 server closes its listener between tests and opens it
	// again: a client right after the previous one may find it closed.
	for attempt := 1; ; attempt++ {
		var out bytes.Buffer
		cmd := exec.Command("iperf3", append(args, "-t", "4", "-J")...)
		cmd.Stdout = &out
		run := func() error { return cmd.Run() }
		var err error
		if c != nil {
			err = c.in(run)
		} else {
			err = run()
		}
		if err != nil {
			t.Fatalf("iperf3 %v: %v\n%s", args, err, out.String())
		}
		res.Error = ""
		err = json.Unmarshal(out.Bytes(), &res)
		if err == nil && strings.Contains(res.Error, "unable to connect") && attempt < 5 {
			t.Logf("iperf3 %v: %s; again", args, res.Error)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if err != nil || res.Error != "" {
			t.Fatalf("iperf3 %v: %v %s", args, err, res.Error)
		}
		break
	}
	return res.End.SumReceived.BitsPerSecond / 1e9
}

// waitListen waits until addr accepts connections (from the calling
// thread's namespace; a probe connection).
func waitListen(addr string) error {
	for i := 0; i < 50; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s never listened", addr)
}

// slirpCtr makes a network namespace served by slirp4netns (MTU 65520, no
// host loopback) with a forward 127.0.0.1:35201 -> 5201.
func slirpCtr(t *testing.T) *ctr {
	t.Helper()
	holder := exec.Command("sleep", "600")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNET, Pdeathsig: unix.SIGKILL}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	api := t.TempDir() + "/slirp.sock"
	startProc(t, nil, "slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback",
		"--api-socket", api, fmt.Sprint(holder.Process.Pid), "tap0")
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	var conn net.Conn
	for i := 0; i < 50; i++ {
		if conn, err = net.Dial("unix", api); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":35201,"guest_port":5201}}`)
	reply := make([]byte, 512)
	n, _ := conn.Read(reply)
	if !strings.Contains(string(reply[:n]), "return") {
		t.Fatalf("add_hostfwd: %s", reply[:n])
	}
	return &ctr{ns: ns}
}
