package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// serve accepts one connection on ln and hands it to handle in a goroutine;
// the returned channel yields handle's error.
func serve(t *testing.T, ln *os.File, handle func(c *ipc.Conn) error) <-chan error {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lfd int
	rc.Control(func(fd uintptr) { lfd = int(fd) })
	errc := make(chan error, 1)
	go func() {
		nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			errc <- fmt.Errorf("accept: %w", err)
			return
		}
		c, err := ipc.FromFD(nfd, "server")
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		errc <- handle(c)
	}()
	return errc
}

func listen(t *testing.T, path string) *os.File {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s) [%d bytes]: %v", path, len(path), err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// longDir returns a directory whose socket path is longer than sun_path.
func longDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestListenDialRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"short path", func(t *testing.T) string { return t.TempDir() }},
		{"path longer than sun_path", longDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(tc.dir(t), "ctl.sock")
			if tc.name != "short path" && len(path) <= 108 {
				t.Fatalf("path %q is only %d bytes", path, len(path))
			}
			ln := listen(t, path)
			fi, err := os.Stat(path)
			if err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("no socket at %s: %v %v", path, fi, err)
			}
			errc := serve(t, ln, func(c *ipc.Conn) error {
				var req ipc.ClientSignalRequested
				if _, err := c.WaitFor(&req); err != nil {
					return err
				}
				if req.Signal != 15 || !req.All {
					return fmt.Errorf("server got %+v", req)
				}
				return c.Send(ipc.BootStarted{Warnings: []string{"over " + filepath.Base(path)}})
			})
			conn, err := Dial(path)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if err := conn.Send(ipc.ClientSignalRequested{Signal: 15, All: true}); err != nil {
				t.Fatal(err)
			}
			var reply ipc.BootStarted
			if _, err := conn.WaitFor(&reply); err != nil {
				t.Fatal(err)
			}
			if len(reply.Warnings) != 1 || reply.Warnings[0] != "over ctl.sock" {
				t.Errorf("reply %+v", reply)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	listen(t, path)
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("second Listen on %s = %v", path, err)
	}
	if _, err := Listen(filepath.Join(t.TempDir(), "missing", "ctl.sock")); err == nil {
		t.Error("Listen in a missing directory succeeded")
	}
	if _, err := Listen(filepath.Join(longDir(t), "missing", "ctl.sock")); err == nil {
		t.Error("Listen with a long path in a missing directory succeeded")
	}
}

func TestDialErrors(t *testing.T) {
	for _, path := range []string{
		filepath.Join(t.TempDir(), "none.sock"),
		filepath.Join(longDir(t), "none.sock"),
	} {
		c, err := Dial(path)
		if err == nil {
			c.Close()
			t.Fatalf("Dial(%s) succeeded", path)
		}
		if !strings.Contains(err.Error(), "connect to moat boot") || !errors.Is(err, unix.ENOENT) {
			t.Errorf("Dial(%s) = %v", path, err)
		}
	}
	// A socket file nobody listens on any more.
	path := filepath.Join(t.TempDir(), "dead.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := Dial(path); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("Dial of a dead socket = %v, want ECONNREFUSED", err)
	}
}

// errRemote is a sentinel of ipc's table: its identity crosses processes.
var errRemote = ipc.ErrNotRunning

func TestRequest(t *testing.T) {
	path := filepath.Join(longDir(t), "ctl.sock")
	ln := listen(t, path)

	// Answered.
	errc := serve(t, ln, func(c *ipc.Conn) error {
		var req ipc.ClientStartRequested
		if _, err := c.WaitFor(&req); err != nil {
			return err
		}
		return c.Send(ipc.BootStarted{Warnings: []string{"w"}})
	})
	var started ipc.BootStarted
	if err := Request(path, ipc.ClientStartRequested{}, &started, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if len(started.Warnings) != 1 || started.Warnings[0] != "w" {
		t.Errorf("reply %+v", started)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// Refused with a named sentinel.
	errc = serve(t, ln, func(c *ipc.Conn) error {
		if _, err := c.Recv(); err != nil {
			return err
		}
		return c.Send(ipc.FailedFrom("boot", fmt.Errorf("pause: %w", errRemote)))
	})
	err := Request(path, ipc.ClientSignalRequested{Signal: 9}, &ipc.BootSignalled{}, 5*time.Second)
	if !errors.Is(err, errRemote) || !strings.Contains(err.Error(), "pause") {
		t.Errorf("Request answered by BootFailed = %v", err)
	}
	<-errc

	// Boot hangs up without answering.
	errc = serve(t, ln, func(c *ipc.Conn) error {
		_, err := c.Recv()
		return err
	})
	err = Request(path, ipc.ClientSignalRequested{Signal: 9}, &ipc.BootSignalled{}, 5*time.Second)
	if !errors.Is(err, ipc.ErrPeerClosed) {
		t.Errorf("Request to a peer that hung up = %v", err)
	}
	<-errc

	// Boot never answers: the timeout ends the wait.
	release := make(chan struct{})
	errc = serve(t, ln, func(c *ipc.Conn) error {
		<-release
		return nil
	})
	start := time.Now()
	err = Request(path, ipc.ClientSignalRequested{Signal: 9}, &ipc.BootSignalled{}, 200*time.Millisecond)
	close(release)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Request without an answer = %v, want a deadline error", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Request took %s with a 200ms timeout", el)
	}
	<-errc

	// An answer that carries descriptors: Request closes them.
	r, w, _ := os.Pipe()
	defer w.Close()
	errc = serve(t, ln, func(c *ipc.Conn) error {
		if _, err := c.Recv(); err != nil {
			return err
		}
		return c.Send(ipc.BootSignalled{}, int(r.Fd()))
	})
	if err := Request(path, ipc.ClientSignalRequested{Signal: 1}, &ipc.BootSignalled{}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := w.Write([]byte("x")); !errors.Is(err, unix.EPIPE) {
		t.Errorf("descriptor received by Request leaked (write: %v)", err)
	}

	// Nobody at the address.
	if err := Request(filepath.Join(t.TempDir(), "x.sock"), ipc.ClientStartRequested{}, &started, time.Second); err == nil {
		t.Error("Request to a missing socket succeeded")
	}
}
