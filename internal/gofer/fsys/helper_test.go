package fsys

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// The roles of the re-executed test binary (internal/testutil/reexec).
const (
	// roleServe: a stand-alone server for the tests that kill it (argument:
	// the mode); fd 3 is the FUSE connection, fd 4 the served root.
	roleServe = "fsys-serve"
	// roleMountNS: the whole run again in a mount namespace of its own: a
	// mount namespace created elsewhere meanwhile (a container started by
	// another test suite on the same machine) would otherwise copy the
	// test's FUSE mounts and keep them alive after the test unmounts them.
	roleMountNS = "fsys-mountns"
)

func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{roleServe: helperServe})
	if role, _ := reexec.Role(); os.Geteuid() == 0 && role != roleMountNS {
		os.Exit(reexecInMountNS())
	}
	syscall.Umask(0) // as in the gofer: the kernel already applied the caller's umask
	if os.Geteuid() == 0 {
		// fusectl lets a cleanup abort a connection whose server is stuck.
		if _, err := os.Stat("/sys/fs/fuse/connections/"); err == nil {
			unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
		}
	}
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// helperLogEnv names a file the helper server writes its request log to.
const helperLogEnv = "MOAT_FSYS_TEST_LOG"

func reexecInMountNS() int {
	// "-test.run=" runs every test unless the run's own flags, which
	// follow, say otherwise.
	cmd := reexec.Command(context.Background(), roleMountNS, "", append([]string{"-test.run="}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Go makes / recursively private in the new namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "re-exec in a mount namespace:", err)
		return 1
	}
	return 0
}

func helperServe(mode string) int {
	opts := Options{Cache: CacheShort}
	if strings.HasPrefix(mode, "long") {
		opts = Options{Cache: CacheLong, ReadOnly: true}
	}
	switch mode {
	case "long-open":
		opts.openMode = openAlways
	case "long-passthrough":
		opts.Passthrough, opts.openMode = true, openAlways
	}
	if path := os.Getenv(helperLogEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		var mu sync.Mutex
		opts.debug = true
		opts.Logf = func(format string, args ...any) {
			mu.Lock()
			fmt.Fprintf(f, format+"\n", args...)
			mu.Unlock()
		}
	}
	root := os.NewFile(4, "root")
	if err := Serve(root, 3, opts); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	}
	return 0
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts FUSE)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// testMount is one FUSE mount served in this process.
type testMount struct {
	src, dir string
	fuseFD   int
	done     chan error
	logMu    sync.Mutex
	log      []string
}

// mountOpts selects the mount flags and logging of a test mount.
type mountOpts struct {
	flags uintptr // extra mount flags (MS_RDONLY)
	trace bool    // record go-fuse's request log (slow)
}

// openFuse opens /dev/fuse and mounts it on dir the way init does.
func openFuse(t testing.TB, dir string, flags uintptr) int {
	t.Helper()
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open /dev/fuse: %v", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd)
	if err := unix.Mount("moat-test", dir, "fuse.moat", unix.MS_NOSUID|unix.MS_NODEV|flags, data); err != nil {
		unix.Close(fd)
		t.Fatalf("mount fuse on %s: %v", dir, err)
	}
	return fd
}

// mountFS serves src on a new mount and unmounts it when the test ends.
func mountFS(t testing.TB, src string, opts Options, mo mountOpts) *testMount {
	t.Helper()
	requireRoot(t)
	m := &testMount{src: src, dir: t.TempDir(), done: make(chan error, 1)}
	if mo.trace {
		opts.Logf = m.record
		opts.debug = true
	}
	m.fuseFD = openFuse(t, m.dir, mo.flags)
	root, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- Serve(root, m.fuseFD, opts) }()
	conn := connID(t, m.dir)
	t.Cleanup(func() {
		if err := unix.Unmount(m.dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", m.dir, err)
		}
		select {
		case err := <-m.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of the unmount; aborting the connection")
			abortConn(conn)
		}
		unix.Close(m.fuseFD)
		root.Close()
	})
	within(t, 5*time.Second, "mount ready", func() error {
		_, err := os.Stat(m.dir)
		return err
	})
	pollHack(t, m.dir)
	return m
}

// pollHack makes the kernel learn, with a raw open and poll, that the
// server does not support POLL. Otherwise the Go runtime's epoll
// registration of the first os.File opened on the mount sends FUSE_POLL
// while it holds a P, and a stop-the-world GC then deadlocks the process
// that also serves the mount. go-fuse answers the magic name itself.
func pollHack(t testing.TB, dir string) {
	within(t, 5*time.Second, "poll hack", func() error {
		fd, err := unix.Open(filepath.Join(dir, ".go-fuse-epoll-hack"), unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
		return unix.Close(fd)
	})
}

// connID is the fusectl connection number of the mount on dir, read from
// mountinfo so that a hung mount is never touched.
func connID(t testing.TB, dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == dir {
			_, minor, _ := strings.Cut(f[2], ":")
			return minor
		}
	}
	t.Fatalf("no mount on %s in mountinfo", dir)
	return ""
}

func abortConn(id string) {
	os.WriteFile("/sys/fs/fuse/connections/"+id+"/abort", []byte("1"), 0)
}

func (m *testMount) record(format string, args ...any) {
	m.logMu.Lock()
	m.log = append(m.log, fmt.Sprintf(format, args...))
	m.logMu.Unlock()
}

// countOps counts the requests of kind op ("OPEN", "READ", ...) logged since
// the mount or the last clearLog.
func (m *testMount) countOps(op string) int {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return countOps(m.log, op)
}

// countOps counts the requests of kind op in go-fuse's debug log lines.
func countOps(lines []string, op string) int {
	n := 0
	for _, l := range lines {
		if i := strings.Index(l, ": "); i >= 0 && strings.HasPrefix(l, "rx ") &&
			strings.HasPrefix(l[i+2:], op+" ") {
			n++
		}
	}
	return n
}

func (m *testMount) clearLog() {
	m.logMu.Lock()
	m.log = nil
	m.logMu.Unlock()
}

func (m *testMount) path(p string) string    { return filepath.Join(m.dir, p) }
func (m *testMount) srcPath(p string) string { return filepath.Join(m.src, p) }

// within runs f in a goroutine and fails the test if it does not return in
// time (a FUSE bug would otherwise hang the whole test binary).
func within(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: no answer within %v", what, d)
	}
}

// errnoOf extracts the errno of an error from the os or unix packages.
func errnoOf(err error) unix.Errno {
	for err != nil {
		if e, ok := err.(unix.Errno); ok {
			return e
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return 0
		}
		err = u.Unwrap()
	}
	return 0
}

func wantErrno(t *testing.T, what string, err error, want unix.Errno) {
	t.Helper()
	if got := errnoOf(err); got != want {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startHelper serves src from a child process (the test binary) on a new
// mount; the caller may kill it. Returns the mount directory and the child.
// mode: "short" (CacheShort), "long" (CacheLong, ReadOnly, MS_RDONLY),
// "long-nordonly" (the same without MS_RDONLY), "long-open" (always OPEN),
// "long-passthrough". With logPath set, the child
// logs every request there.
//
// Anything that blocks on the mount while holding a Go scheduler P (exec,
// which vforks; page faults) must use a server in another process: in the
// serving process a stop-the-world would wait for that P forever.
func startHelper(t testing.TB, src, mode, logPath string) (string, *exec.Cmd) {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	var flags uintptr
	if strings.HasPrefix(mode, "long") && mode != "long-nordonly" {
		flags = unix.MS_RDONLY // as init mounts a read-only tree
	}
	fd := openFuse(t, dir, flags)
	root, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	// Killed by the test or at its cleanup.
	cmd := reexec.Command(context.Background(), roleServe, mode)
	cmd.Env = append(cmd.Env, helperLogEnv+"="+logPath)
	fuseFile := os.NewFile(uintptr(fd), "fuse")
	cmd.ExtraFiles = []*os.File{fuseFile, root}
	cmd.Stderr = os.Stderr
	err = cmd.Start()
	fuseFile.Close() // the child holds the only copy: its death aborts the connection
	root.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		unix.Unmount(dir, unix.MNT_DETACH)
	})
	within(t, 5*time.Second, "helper mount ready", func() error {
		_, err := os.Stat(dir)
		return err
	})
	return dir, cmd
}

func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
