package network

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Benchmarks (go test -bench . -run '^$' ./internal/network/): throughput
// through the sandbox network and short-connection rate, all inside the
// test's namespaces. MTU 65520, one 256 KiB write per op.
//
//	BenchmarkTCPContainerToHost   container sends to a host server (NAT)
//	BenchmarkTCPHostToContainer   container downloads from a host server (NAT)
//	BenchmarkTCPForwardInbound    host client sends through a port forward
//	BenchmarkShortConnNAT         dial + 1-byte echo + close, container -> host
//	BenchmarkShortConnForward     the same, host -> container via a forward

const benchChunk = 256 << 10

// sink reads everything, then acknowledges EOF with one byte.
func sink(c net.Conn) {
	buf := make([]byte, benchChunk)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	c.Write([]byte{1})
}

// source writes until the peer closes.
func source(c net.Conn) {
	buf := make([]byte, benchChunk)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// pushBytes writes b.N chunks to conn and waits for the sink's ack.
func pushBytes(b *testing.B, conn net.Conn) {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	conn.(interface{ CloseWrite() error }).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		b.Fatal("no ack:", err)
	}
	b.StopTimer()
	reportGbps(b)
}

func reportGbps(b *testing.B) {
	b.ReportMetric(float64(b.N)*benchChunk*8/b.Elapsed().Seconds()/1e9, "Gbps")
}

func BenchmarkTCPContainerToHost(b *testing.B) {
	ln := remoteListen(b, addrPort(remoteA, 0))
	serveFor(ln, 0, sink)
	c := newCtr(b, Config{})
	conn, err := c.dial("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pushBytes(b, conn)
}

func BenchmarkTCPHostToContainer(b *testing.B) {
	ln := remoteListen(b, addrPort(remoteA, 0))
	serveFor(ln, 0, source)
	c := newCtr(b, Config{})
	conn, err := c.dial("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportGbps(b)
}

func BenchmarkTCPForwardInbound(b *testing.B) {
	c := newCtr(b, Config{})
	serveFor(c.listen(b, "0.0.0.0:7001"), 0, sink)
	if err := c.sb.AddForward(Forward{Proto: TCP, HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), ContainerPort: 7001}); err != nil {
		b.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", addrPort(loopAdr, c.forwardPort(b, TCP, 7001)), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	pushBytes(b, conn)
}

func BenchmarkShortConnNAT(b *testing.B) {
	ln := remoteListen(b, addrPort(remoteA, 0))
	serve(ln, echoOne)
	c := newCtr(b, Config{})
	target := ln.Addr().String()
	b.ResetTimer()
	err := c.in(func() error {
		for i := 0; i < b.N; i++ {
			if err := roundTripHere(target); err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
		return nil
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
}

func BenchmarkShortConnForward(b *testing.B) {
	c := newCtr(b, Config{})
	serve(c.listen(b, "0.0.0.0:7002"), echoOne)
	if err := c.sb.AddForward(Forward{Proto: TCP, HostAddr: netip.MustParseAddrPort("127.0.0.1:0"), ContainerPort: 7002}); err != nil {
		b.Fatal(err)
	}
	target := addrPort(loopAdr, c.forwardPort(b, TCP, 7002))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := roundTripHere(target); err != nil {
			b.Fatalf("connection %d: %v", i, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conn/s")
}

// BenchmarkHostAddrCheck is the per-flow cost of asking the kernel whether a
// destination is one of the host's addresses (a remote one: the common
// case).
func BenchmarkHostAddrCheck(b *testing.B) {
	needHostsim(b)
	var h hostAddrs
	defer h.close()
	for b.Loop() {
		if local, err := h.isHost(remoteA); err != nil || local {
			b.Fatalf("%v %v", local, err)
		}
	}
}
