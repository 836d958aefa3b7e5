package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// testParent is the cgroup, in every hierarchy, under which the tests that
// touch the host create their cgroups. TestMain removes it and fails the run
// if anything is left below it.
var testParent = fmt.Sprintf("/moat-cgroup-test-%d", os.Getpid())

func TestMain(m *testing.M) {
	if role, parentNS := reexec.Role(); role == v2Role {
		if err := becomeV2(parentNS); err != nil {
			fmt.Fprintln(os.Stderr, "cgroup v2 test child:", err)
			os.Exit(2)
		}
	}
	code := m.Run()
	if leaks := removeTestParent(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: cgroups leaked under %s:\n  %s\n", testParent, strings.Join(leaks, "\n  "))
		code = 1
	}
	os.Exit(code)
}

// hierarchies returns the mount points of every cgroup (v1 and v2) hierarchy.
func hierarchies() ([]string, error) {
	mounts, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.FSType != "cgroup" && i.FSType != "cgroup2", false
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mi := range mounts {
		out = append(out, mi.Mountpoint)
	}
	return out, nil
}

// leftovers lists the directories below rel (a cgroup path) in any hierarchy.
func leftovers(rel string) []string {
	hs, err := hierarchies()
	if err != nil {
		return []string{"cannot list hierarchies: " + err.Error()}
	}
	var out []string
	for _, h := range hs {
		_ = filepath.WalkDir(filepath.Join(h, rel), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// removeTestParent removes testParent from every hierarchy and returns what
// was left inside it.
func removeTestParent() []string {
	hs, err := hierarchies()
	if err != nil {
		return []string{err.Error()}
	}
	var leaks []string
	for _, h := range hs {
		dir := filepath.Join(h, testParent)
		for _, p := range leftovers(testParent) {
			if strings.HasPrefix(p, dir+"/") {
				leaks = append(leaks, p)
			}
		}
		if err := cgroups.RemovePath(dir); err != nil {
			leaks = append(leaks, fmt.Sprintf("%s: %v", dir, err))
		}
	}
	return leaks
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
}

func isV2() bool { return cgroups.IsCgroup2UnifiedMode() }

// available reports whether the host offers controller ctrl (v1 name, or v2
// name on v2).
func available(ctrl string) bool {
	if isV2() {
		data, err := cgroups.ReadFile(fs2.UnifiedMountpoint, "cgroup.controllers")
		return err == nil && slices.Contains(strings.Fields(data), ctrl)
	}
	_, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctrl, "cgroup.procs"))
	return err == nil
}

// uniquePath returns a fresh cgroupsPath below testParent for t.
func uniquePath(t *testing.T) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("%s/%s-%d", testParent, name, time.Now().UnixNano()%1e6)
}

func ptr[T any](v T) *T { return &v }

// child is a test process with its stdout lines on a channel.
type child struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stderr string // file collecting the child's stderr
	lines  chan string
	done   chan error
}

// startChild runs sh -c script; t.Cleanup kills and reaps it.
func startChild(t *testing.T, script string) *child {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = stdinR
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	c := &child{cmd: cmd, stdin: stdinW, stderr: errFile.Name(), lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		stdinW.Close()
		c.wait(t, 10*time.Second)
	})
	return c
}

// wait returns the child's exit error, failing t if it does not exit in time.
func (c *child) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // keep it for later callers
		return err
	case <-time.After(d):
		t.Errorf("child %d did not exit within %v", c.cmd.Process.Pid, d)
		return errors.New("timeout")
	}
}

// exited reports whether the child has exited (without waiting).
func (c *child) exited() bool {
	select {
	case err := <-c.done:
		c.done <- err
		return true
	default:
		return false
	}
}

// countLines counts lines arriving within d.
func (c *child) countLines(d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-c.lines:
			if !ok {
				return n
			}
			n++
		case <-deadline:
			return n
		}
	}
}

// expectLine waits for the next line and returns it.
func (c *child) expectLine(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			errs, _ := os.ReadFile(c.stderr)
			t.Fatalf("child closed stdout (exit: %v); stderr: %s", c.wait(t, time.Second), errs)
		}
		return l
	case <-time.After(d):
		t.Fatalf("no output from child within %v", d)
	}
	return ""
}

// tickScript prints "tick" every 50ms, forking a sleep each time.
const tickScript = `while :; do echo tick; sleep 0.05; done`

// newTestManager creates a manager and registers cleanup that kills whatever
// is left in it, reaps c (if any) and destroys the cgroup, failing t if
// anything is left.
func newTestManager(t *testing.T, o Options, c *child) *Manager {
	t.Helper()
	m, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	t.Cleanup(func() { cleanupManager(t, m, c) })
	return m
}

func cleanupManager(t *testing.T, m *Manager, c *child) {
	t.Helper()
	_ = m.Resume()
	if err := m.Signal(unix.SIGKILL); err != nil && !errors.Is(err, ErrNoCgroupAccess) {
		t.Errorf("cleanup: Signal(SIGKILL): %v", err)
	}
	if c != nil {
		_ = c.cmd.Process.Kill()
		c.wait(t, 10*time.Second)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("cleanup: Destroy: %v", err)
	}
	for _, p := range m.Saved().Paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("cleanup: %s still exists after Destroy", p)
		}
	}
}

// cgPath returns the directory of controller ctrl (v1 name) for m, or the
// unified directory on v2.
func cgPath(t *testing.T, m *Manager, ctrl string) string {
	t.Helper()
	paths := m.Saved().Paths
	if isV2() {
		ctrl = ""
	}
	p, ok := paths[ctrl]
	if !ok {
		t.Fatalf("no %q path in %v", ctrl, paths)
	}
	return p
}

// readCg returns the trimmed content of a cgroup file.
func readCg(t *testing.T, dir, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read cgroup file: %v", err)
	}
	return strings.TrimSpace(string(data))
}

func expectCg(t *testing.T, dir, file, want string) {
	t.Helper()
	if got := readCg(t, dir, file); got != want {
		t.Errorf("%s/%s = %q, want %q", dir, file, got, want)
	}
}

// procCgroups returns /proc/pid/cgroup, for "did the pid move" checks.
func procCgroups(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// procState returns the state letter from /proc/pid/stat.
func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "?"
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return "?"
}

// noResources is an empty resources value, for managers that need no limits.
var noResources = &specs.LinuxResources{}
