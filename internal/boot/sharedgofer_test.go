package boot

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialSharedBounded: a shared gofer that no longer accepts (its
// backlog full) makes boot's connect fail within the dial bound, never wait
// for ever while boot holds the directory's lock.
func TestDialSharedBounded(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "g.sock")
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(l, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the backlog: connections that are never accepted.
	for i := 0; ; i++ {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c)
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: sock}); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatalf("fill the backlog: %v", err)
		}
		if i > 100 {
			t.Fatal("the backlog never filled")
		}
	}
	done := make(chan error, 1)
	go func() {
		s, err := dialShared(sock, 100*time.Millisecond)
		if s != nil {
			s.close()
		}
		done <- err
	}()
	// A watchdog, not a measure: the bound is 100 ms.
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("dialShared to a gofer that never accepts succeeded")
		}
	case <-time.After(time.Minute):
		t.Fatal("dialShared to a gofer whose backlog is full is still waiting after a minute")
	}
}

// TestSharedRootCloseReleases: closing the attachment ends the connection
// at once, though watch is blocked reading it: the shared gofer sees its
// count drop, and watch has returned.
func TestSharedRootCloseReleases(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	s := &sharedRoot{conn: os.NewFile(uintptr(fds[0]), "shared-gofer"), done: make(chan struct{})}
	go s.watch()
	// Wait until watch is blocked in read(2) on the connection.
	want := fmt.Sprintf("%d 0x%x ", unix.SYS_READ, fds[0])
	for blocked := false; !blocked; {
		tasks, _ := filepath.Glob("/proc/self/task/*/syscall")
		for _, task := range tasks {
			if data, _ := os.ReadFile(task); strings.HasPrefix(string(data), want) {
				blocked = true
			}
		}
		runtime.Gosched()
	}
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	eof := make(chan int, 1)
	go func() {
		n, _ := unix.Read(fds[1], make([]byte, 1))
		eof <- n
	}()
	select { // a watchdog, not a measure
	case n := <-eof:
		if n != 0 {
			t.Fatalf("the gofer's end read %d bytes, want EOF", n)
		}
	case <-time.After(time.Minute):
		t.Fatal("the gofer's end never saw the connection close")
	}
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("close never returned")
	}
	select {
	case <-s.done:
	default:
		t.Fatal("watch still runs after close")
	}
}
