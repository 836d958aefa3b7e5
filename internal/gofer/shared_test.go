package gofer

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dialRecv connects to sock and returns the connection and the descriptor
// received on it (-1: closed without one).
func dialRecv(t *testing.T, sock string) (int, int) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil || n == 0 {
		return fd, -1
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v %v", msgs, err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights %v %v", fds, err)
	}
	return fd, fds[0]
}

// TestAcceptLoop: each connection gets the descriptor; past MaxClients a
// connection is closed unanswered; the loop ends only once every
// connection has closed and the idle time has passed, and then no longer
// listens.
func TestAcceptLoop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 8); err != nil {
		t.Fatal(err)
	}
	payload, err := unix.MemfdCreate("mount", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(payload)
	var want unix.Stat_t
	if err := unix.Fstat(payload, &want); err != nil {
		t.Fatal(err)
	}
	a := SharedArgs{MountFD: payload, ListenFD: lfd, Idle: 500 * time.Millisecond, MaxClients: 2}
	done := make(chan error, 1)
	go func() { done <- acceptLoop(a, make(chan error), slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	var conns []int
	for i := 0; i < 2; i++ {
		c, fd := dialRecv(t, sock)
		if fd < 0 {
			t.Fatalf("client %d got no descriptor", i)
		}
		var got unix.Stat_t
		if err := unix.Fstat(fd, &got); err != nil || got.Ino != want.Ino {
			t.Fatalf("client %d got another file (%v)", i, err)
		}
		unix.Close(fd)
		conns = append(conns, c)
	}
	c, fd := dialRecv(t, sock)
	if fd >= 0 {
		t.Fatalf("a client past MaxClients got the descriptor")
	}
	unix.Close(c)
	// Clients attached: it keeps serving well past the idle time.
	select {
	case err := <-done:
		t.Fatalf("ended with clients attached: %v", err)
	case <-time.After(3 * a.Idle):
	}
	for _, c := range conns {
		unix.Close(c)
	}
	if err := <-done; err != nil {
		t.Fatalf("ended with %v, want nil once idle", err)
	}
	probe, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(probe)
	if err := unix.Connect(probe, &unix.SockaddrUnix{Name: sock}); err == nil {
		t.Errorf("still listening after going idle")
	}
}

// The shared gofer serves the directory boot keyed it by, or nothing: a
// directory swapped in under the same path is refused.
func TestIsKeyedRefusesSwappedRoot(t *testing.T) {
	base := t.TempDir()
	img := filepath.Join(base, "rootfs")
	if err := os.Mkdir(img, 0o755); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	keyed := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	open := func() *os.File {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	if err := isKeyed(open(), keyed); err != nil {
		t.Errorf("the keyed directory itself: %v", err)
	}
	// Swapped between boot's look and the gofer's open.
	if err := os.Rename(img, filepath.Join(base, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(img, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := isKeyed(open(), keyed); err == nil || !strings.Contains(err.Error(), "not the one keyed") {
		t.Errorf("a directory swapped in under the image's path: %v, want a refusal", err)
	}
}
