package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair returns a connected pair closed at the end of the test.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pair("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// rawFD returns f's descriptor without the side effect of (*os.File).Fd,
// which switches the file to blocking mode.
func rawFD(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// pipe returns a pipe whose write end is closed at the end of the test.
func pipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// assertNoReader checks that every read end of the pipe whose write end is w
// is closed: writing fails with EPIPE. The caller must have closed its own
// copies of the read end.
func assertNoReader(t *testing.T, w *os.File) {
	t.Helper()
	_, err := w.Write([]byte("x"))
	if !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write to the pipe: %v; want EPIPE (a received descriptor was leaked)", err)
	}
}

func TestSendRecvRoundTrip(t *testing.T) {
	a, b := pair(t)
	in := BootCreated{InitPid: 42, InitStart: 12345, Warnings: []string{"w1", "w2"}, HasPty: true}
	if err := a.Send(in); err != nil {
		t.Fatal(err)
	}
	raw, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if raw.Type != "BootCreated" || len(raw.Files) != 0 {
		t.Fatalf("got type %q with %d files", raw.Type, len(raw.Files))
	}
	var out BootCreated
	if err := raw.Decode(&out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
	if raw.AsError() != nil {
		t.Fatalf("AsError of a non-Failed message: %v", raw.AsError())
	}
	// Both directions work.
	if err := b.Send(ClientCreateCommitted{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitFor(&ClientCreateCommitted{}); err != nil {
		t.Fatal(err)
	}
}

func TestSendRecvWithFD(t *testing.T) {
	a, b := pair(t)
	r, w := pipe(t)
	if err := a.Send(InitPtyCreated{}, int(r.Fd())); err != nil {
		t.Fatal(err)
	}
	r.Close() // the descriptor in flight keeps the pipe's read end open
	raw, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Files) != 1 {
		t.Fatalf("received %d files, want 1", len(raw.Files))
	}
	got := raw.Files[0]
	flags, err := unix.FcntlInt(got.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received descriptor is not close-on-exec (flags %#x, %v)", flags, err)
	}
	if _, err := w.Write([]byte("through the socket")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := got.Read(buf)
	if err != nil || string(buf[:n]) != "through the socket" {
		t.Fatalf("read through received fd: %q, %v", buf[:n], err)
	}
	raw.CloseFiles()
	if raw.Files != nil {
		t.Error("CloseFiles left Files set")
	}
	assertNoReader(t, w)
}

func TestSendSeveralFDs(t *testing.T) {
	a, b := pair(t)
	var fds []int
	var writers []*os.File
	for i := 0; i < 3; i++ {
		r, w := pipe(t)
		fds = append(fds, int(r.Fd()))
		writers = append(writers, w)
	}
	if err := a.Send(BootExecConfig{Namespaces: nil}, fds...); err != nil {
		t.Fatal(err)
	}
	var cfg BootExecConfig
	files, err := b.WaitFor(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 {
		t.Fatalf("received %d files, want 3", len(files))
	}
	// Order is preserved: writer i reaches file i.
	for i, w := range writers {
		fmt.Fprintf(w, "pipe %d", i)
		buf := make([]byte, 16)
		n, _ := files[i].Read(buf)
		if want := fmt.Sprintf("pipe %d", i); string(buf[:n]) != want {
			t.Errorf("file %d read %q, want %q", i, buf[:n], want)
		}
		files[i].Close()
	}
}

func TestFramingBackToBack(t *testing.T) {
	a, b := pair(t)
	const n = 200
	r, w := pipe(t)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			var err error
			if i%10 == 0 {
				err = a.Send(BootExecStarted{Pid: i, HasPty: true}, int(r.Fd()))
			} else {
				err = a.Send(BootExecStarted{Pid: i})
			}
			if err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		var m BootExecStarted
		files, err := b.WaitFor(&m)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.Pid != i {
			t.Fatalf("message %d carries pid %d: framing lost", i, m.Pid)
		}
		wantFiles := 0
		if i%10 == 0 {
			wantFiles = 1
		}
		if len(files) != wantFiles || m.HasPty != (wantFiles == 1) {
			t.Fatalf("message %d: %d files (hasPty %v), want %d", i, len(files), m.HasPty, wantFiles)
		}
		for _, f := range files {
			f.Close()
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r.Close()
	assertNoReader(t, w)
}

func TestLargeMessage(t *testing.T) {
	a, b := pair(t)
	sndbuf, err := unix.GetsockoptInt(rawFD(t, a.File()), unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		t.Fatal(err)
	}
	// Well beyond what the socket buffers hold, so Send must loop over
	// partial writes while Recv reads.
	size := 4*sndbuf + 12345
	var warns []string
	total := 0
	for i := 0; total < size; i++ {
		s := fmt.Sprintf("warning %d %s", i, strings.Repeat("x", 1000))
		warns = append(warns, s)
		total += len(s)
	}
	in := BootCreated{InitPid: 7, Warnings: warns}
	r, w := pipe(t)
	errc := make(chan error, 1)
	go func() { errc <- a.Send(in, int(r.Fd())) }()
	var out BootCreated
	files, err := b.WaitFor(&out)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("large message corrupted (%d warnings, want %d)", len(out.Warnings), len(in.Warnings))
	}
	if len(files) != 1 {
		t.Fatalf("received %d files with the large message, want 1", len(files))
	}
	files[0].Close()
	r.Close()
	assertNoReader(t, w)
	// The stream is still in sync afterwards.
	if err := a.Send(BootSignalled{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitFor(&BootSignalled{}); err != nil {
		t.Fatal(err)
	}
}

// errTestSentinel is one of the table's (errors.go).
var errTestSentinel = ErrNoFuse

func TestWaitForFailed(t *testing.T) {
	a, b := pair(t)
	wrapped := fmt.Errorf("mount /proc: %w", errTestSentinel)
	if got := SentinelName(wrapped); got != "no-fuse" {
		t.Fatalf("SentinelName = %q", got)
	}
	if got := SentinelName(errors.New("plain")); got != "" {
		t.Fatalf("SentinelName of an unregistered error = %q", got)
	}
	f := FailedFrom("init", wrapped)
	if f.Kind() != "InitFailed" || f.Sentinel != "no-fuse" || f.Error != wrapped.Error() {
		t.Fatalf("FailedFrom = %+v (kind %s)", f, f.Kind())
	}
	r, w := pipe(t)
	if err := a.Send(f, int(r.Fd())); err != nil {
		t.Fatal(err)
	}
	r.Close()
	files, err := b.WaitFor(&InitCreated{})
	if err == nil || files != nil {
		t.Fatalf("WaitFor got (%v, %v), want an error", files, err)
	}
	if !errors.Is(err, errTestSentinel) {
		t.Errorf("errors.Is(%v, sentinel) = false", err)
	}
	if err.Error() != wrapped.Error() {
		t.Errorf("error text %q, want %q", err.Error(), wrapped.Error())
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Role != "init" {
		t.Errorf("error %T %+v is not a RemoteError from init", err, re)
	}
	assertNoReader(t, w)

	// A Failed message without a sentinel, and from an unnamed role.
	if err := a.Send(Failed{Error: "no reason"}); err != nil {
		t.Fatal(err)
	}
	raw, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if raw.Type != "PeerFailed" {
		t.Errorf("type %q, want PeerFailed", raw.Type)
	}
	ferr := raw.AsError()
	if ferr == nil || ferr.Error() != "no reason" || errors.Is(ferr, errTestSentinel) {
		t.Errorf("AsError = %v", ferr)
	}
	if errors.Unwrap(ferr) != nil {
		t.Errorf("unnamed sentinel unwraps to %v", errors.Unwrap(ferr))
	}
}

// TestSentinelTable: every sentinel has one wire name, and a name the
// receiver does not know leaves a plain error (no false match).
func TestSentinelTable(t *testing.T) {
	seen := map[error]string{}
	for name, err := range sentinels {
		if other, dup := seen[err]; dup {
			t.Errorf("%v has two names: %s and %s", err, name, other)
		}
		seen[err] = name
		if got := SentinelName(fmt.Errorf("context: %w", err)); got != name {
			t.Errorf("SentinelName(wrapped %v) = %q, want %q", err, got, name)
		}
	}
	raw := &Raw{Type: "BootFailed", Body: []byte(`{"role":"boot","error":"x","sentinel":"from-a-newer-moat"}`)}
	if err := raw.AsError(); err == nil || errors.Unwrap(err) != nil {
		t.Errorf("unknown sentinel name gave %v (unwraps to %v)", err, errors.Unwrap(err))
	}
}

func TestAsErrorUndecodable(t *testing.T) {
	raw := &Raw{Type: "BootFailed", Body: []byte(`"not an object"`)}
	err := raw.AsError()
	if err == nil || !strings.Contains(err.Error(), "BootFailed") || !strings.Contains(err.Error(), "undecodable") {
		t.Fatalf("AsError = %v", err)
	}
}

func TestWaitForUnexpectedType(t *testing.T) {
	a, b := pair(t)
	r, w := pipe(t)
	if err := a.Send(BootStarted{}, int(r.Fd())); err != nil {
		t.Fatal(err)
	}
	r.Close()
	files, err := b.WaitFor(&BootCreated{})
	if err == nil || files != nil {
		t.Fatalf("WaitFor = (%v, %v), want a protocol error", files, err)
	}
	for _, want := range []string{"protocol error", "expected BootCreated", "got BootStarted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	assertNoReader(t, w)
}

func TestDecodeMismatchAndEmptyBody(t *testing.T) {
	raw := &Raw{Type: "BootStarted"}
	if err := raw.Decode(&BootStarted{}); err != nil {
		t.Errorf("empty body: %v", err)
	}
	if err := raw.Decode(&BootCreated{}); err == nil {
		t.Error("type mismatch accepted")
	}
	bad := &Raw{Type: "BootCreated", Body: []byte(`{"initPid":"seven"}`)}
	if err := bad.Decode(&BootCreated{}); err == nil || !strings.Contains(err.Error(), "decode BootCreated") {
		t.Errorf("wrong body type: %v", err)
	}
}

// writeRaw writes bytes on the raw socket, bypassing the framing.
func writeRaw(t *testing.T, c *Conn, data []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(rawFD(t, c.File()), data, oob, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func header(n uint32) []byte {
	h := make([]byte, 4)
	binary.BigEndian.PutUint32(h, n)
	return h
}

func TestPeerClosed(t *testing.T) {
	t.Run("before anything", func(t *testing.T) {
		a, b := pair(t)
		a.Close()
		if _, err := b.Recv(); !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("Recv = %v, want ErrPeerClosed", err)
		}
		if _, err := b.WaitFor(&BootCreated{}); !errors.Is(err, ErrPeerClosed) || !strings.Contains(err.Error(), "waiting for BootCreated") {
			t.Fatalf("WaitFor = %v", err)
		}
	})
	t.Run("inside the header", func(t *testing.T) {
		a, b := pair(t)
		writeRaw(t, a, []byte{0, 0})
		a.Close()
		if _, err := b.Recv(); !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("Recv = %v, want ErrPeerClosed", err)
		}
	})
	t.Run("inside the body", func(t *testing.T) {
		a, b := pair(t)
		r, w := pipe(t)
		writeRaw(t, a, append(header(100), `{"type":"Boot`...), int(r.Fd()))
		r.Close()
		a.Close()
		if _, err := b.Recv(); !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("Recv = %v, want ErrPeerClosed", err)
		}
		assertNoReader(t, w)
	})
	t.Run("send to a closed peer", func(t *testing.T) {
		a, b := pair(t)
		b.Close()
		err := a.Send(BootStarted{})
		if !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("Send = %v, want ErrPeerClosed", err)
		}
	})
}

func TestDeadline(t *testing.T) {
	for _, tc := range []struct {
		name    string
		partial []byte
	}{
		{"nothing sent", nil},
		{"body never completes", append(header(50), '{')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			if tc.partial != nil {
				writeRaw(t, a, tc.partial)
			}
			if err := b.SetDeadline(time.Now().Add(150 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := b.WaitFor(&BootCreated{})
			if el := time.Since(start); el > 3*time.Second {
				t.Fatalf("deadline ignored: returned after %s", el)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("WaitFor = %v, want a deadline error", err)
			}
			var te interface{ Timeout() bool }
			if !errors.As(err, &te) || !te.Timeout() {
				t.Errorf("error %v does not report Timeout()", err)
			}
			// Removing the deadline makes the connection usable again.
			if tc.partial == nil {
				b.SetDeadline(time.Time{})
				if err := a.Send(BootStarted{}); err != nil {
					t.Fatal(err)
				}
				if _, err := b.WaitFor(&BootStarted{}); err != nil {
					t.Fatalf("after clearing the deadline: %v", err)
				}
			}
		})
	}
}

func TestMaxMessage(t *testing.T) {
	a, b := pair(t)
	r, w := pipe(t)
	writeRaw(t, a, header(MaxMessage+1), int(r.Fd()))
	r.Close()
	start := time.Now()
	_, err := b.Recv()
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("Recv = %v, want a size error", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Error("oversized header was not rejected at once")
	}
	assertNoReader(t, w)

	// Exactly the limit is announced without error until the body is read:
	// it is not rejected by size.
	a2, b2 := pair(t)
	writeRaw(t, a2, header(MaxMessage))
	a2.Close()
	if _, err := b2.Recv(); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Recv at the limit = %v, want ErrPeerClosed (not a size error)", err)
	}
}

func TestGarbageBody(t *testing.T) {
	a, b := pair(t)
	body := []byte("this is not json")
	writeRaw(t, a, append(header(uint32(len(body))), body...))
	if _, err := b.Recv(); err == nil || !strings.Contains(err.Error(), "decode message") {
		t.Fatalf("Recv = %v", err)
	}
}

func TestFromFD(t *testing.T) {
	c, err := FromFD(-1, "spec-fd")
	if c != nil || err == nil || !strings.Contains(err.Error(), "spec-fd") || !strings.Contains(err.Error(), "no descriptor") {
		t.Fatalf("FromFD(-1) = %v, %v", c, err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0) // blocking, inheritable
	if err != nil {
		t.Fatal(err)
	}
	a, err := FromFD(fds[0], "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFD(fds[1], "b")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	for _, fd := range fds {
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("fd %d not made close-on-exec", fd)
		}
		if fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("fd %d not made non-blocking", fd)
		}
	}
	if err := a.Send(ClientStartRequested{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitFor(&ClientStartRequested{}); err != nil {
		t.Fatal(err)
	}
	// Deadlines work on an adopted descriptor (it is in the poller).
	b.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := b.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv on adopted fd = %v, want deadline error", err)
	}
}

func TestSocketPairFlags(t *testing.T) {
	x, y, err := SocketPair("flags")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	defer y.Close()
	for _, f := range []*os.File{x, y} {
		if fl, _ := unix.FcntlInt(uintptr(rawFD(t, f)), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s is not close-on-exec", f.Name())
		}
	}
	if !strings.HasPrefix(x.Name(), "flags") {
		t.Errorf("name %q", x.Name())
	}
	// The raw files carry framed messages once wrapped.
	if err := NewConn(x).Send(BootHooksDone{}); err != nil {
		t.Fatal(err)
	}
	raw, err := NewConn(y).Recv()
	if err != nil || raw.Type != "BootHooksDone" {
		t.Fatalf("Recv = %+v, %v", raw, err)
	}
}
