package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestVersionAndHelp(t *testing.T) {
	e := newEnv(t)
	out := e.moat("--version")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "moat version ") ||
		!strings.HasPrefix(lines[1], "commit: ") || !strings.HasPrefix(lines[2], "spec: ") {
		t.Fatalf("--version printed %q", out)
	}
	for _, c := range []string{"create", "start", "run", "state", "list", "kill", "delete", "exec",
		"ps", "pause", "resume", "update", "events", "features", "spec"} {
		if h := e.moat(c, "--help"); !strings.Contains(h, "Usage: moat "+c) {
			t.Errorf("%s --help: %q", c, h)
		}
	}
	if !strings.Contains(e.moat("--help"), "Commands:") {
		t.Error("moat --help lists no commands")
	}
	e.fails("unknown flag --bogus", "create", "--bogus", "x")
	e.fails("unknown flag --nope", "--nope", "list")
	e.fails("unknown command", "frobnicate")
}

func TestRunExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"exit", "7"}, 7},
		{[]string{"exitsig", "KILL"}, 128 + 9},
	} {
		b := e.newBundle(tc.args)
		r := e.run(nil, "run", "--bundle", b.dir, e.id())
		if r.code != tc.code {
			t.Errorf("probe %v: exit %d, want %d\n%s", tc.args, r.code, tc.code, r)
		}
	}
	if out := e.runProbe([]string{"echo", "hello", "moat"}); out != "hello moat\n" {
		t.Errorf("echo printed %q", out)
	}
}

// TestLifecycle drives a container as containerd's shim does: the shim is
// a subreaper, reads --pid-file, and reaps that pid for the exit status.
// The pid is the container's own process, as with runc (tools nsenter
// into it and signal it), not boot's.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	subreaper(t)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	pidFile := filepath.Join(e.dir, "pid")
	e.moat("create", "--bundle", b.dir, "--pid-file", pidFile, id)
	st := e.state(id)
	if st["status"] != "created" || st["id"] != id || st["bundle"] != b.dir {
		t.Fatalf("state after create: %v", st)
	}
	initPid := int(st["pid"].(float64))
	if p := readPid(t, pidFile); p != initPid {
		t.Fatalf("pid file names %d, state's pid is %d: want the container process in both", p, initPid)
	}
	bootPid := parentOf(t, initPid)
	if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", bootPid)); !strings.Contains(string(cl), "boot") {
		t.Errorf("container init's parent %d is %q, want moat boot", bootPid, cl)
	}
	if ns(t, initPid, "pid") == ns(t, os.Getpid(), "pid") {
		t.Error("state pid is not in a new pid namespace")
	}
	e.moat("start", id)
	if e.status(id) != "running" {
		t.Fatalf("after start: %v", e.state(id))
	}
	if pids := e.pids(id); len(pids) == 0 || pids[0] != initPid {
		t.Errorf("ps lists %v, want the container process %d first", pids, initPid)
	}
	e.fails("cannot start", "start", id)
	e.fails("--force", "delete", id)
	list := e.moat("list")
	if !strings.Contains(list, id) || !strings.Contains(list, "running") {
		t.Errorf("list: %q", list)
	}
	if q := strings.TrimSpace(e.moat("list", "-q")); q != id {
		t.Errorf("list -q: %q", q)
	}
	if j := e.moat("list", "--format", "json"); !strings.Contains(j, `"id":"`+id+`"`) {
		t.Errorf("list --format json: %q", j)
	}
	e.moat("kill", id, "KILL")
	// Boot tears down, then exits and leaves init's zombie to us.
	if ws := reap(t, initPid); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("reaped the pid file's process with status %v, want killed by SIGKILL", ws)
	}
	waitExit(t, bootPid)
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
	e.fails("does not exist", "state", id)
	e.moat("delete", "--force", id) // a shim deletes twice: no error
	e.fails("does not exist", "delete", id)
}

// TestPidFileExitStatus: a subreaper waiting on the pid file's process gets
// the container process's own exit status.
func TestPidFileExitStatus(t *testing.T) {
	e := newEnv(t)
	subreaper(t)
	b := e.newBundle([]string{"exit", "7"})
	id := e.id()
	pidFile := filepath.Join(e.dir, "pid")
	e.moat("create", "--bundle", b.dir, "--pid-file", pidFile, id)
	pid := readPid(t, pidFile)
	e.moat("start", id)
	if ws := reap(t, pid); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Errorf("reaped %d with status %v, want exit 7", pid, ws)
	}
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
}

func TestKillInCreatedState(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	e.moat("kill", id, "9")
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
}

func TestDeleteCreatedWithoutForce(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	e.moat("delete", id)
	e.fails("does not exist", "state", id)
}

func TestKillSignals(t *testing.T) {
	e := newEnv(t)
	ready := filepath.Join(e.dir, "ready")
	b := e.newBundle([]string{"signals", "--ready", "/tmp/ready"}, func(s *specsSpec) {
		bindMount(s, e.dir, "/tmp", "rw")
	})
	id := e.id()
	out, wait := e.runDetachedOutput(b, id)
	waitFile(t, ready)
	for _, k := range []struct {
		sig, reported string
		n             int
	}{{"USR1", "SIGUSR1", 1}, {"SIGUSR2", "SIGUSR2", 1}, {"10", "SIGUSR1", 2}, {"HUP", "SIGHUP", 1}} {
		e.moat("kill", id, k.sig)
		waitOutput(t, out, k.reported, k.n)
	}
	e.fails("unknown signal", "kill", id, "SIGNOPE")
	e.moat("kill", id) // default TERM: probe exits 0
	wait()
	got := out()
	for _, want := range []string{"SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTERM"} {
		if !strings.Contains(got, want) {
			t.Errorf("container did not report %s; output %q", want, got)
		}
	}
	if strings.Count(got, "SIGUSR1") != 2 {
		t.Errorf("USR1 by name and by number should both arrive: %q", got)
	}
}

func TestKillAll(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"spawn", "3", "hold", "60"}, func(s *specsSpec) {
		// Without its own pid namespace killing init does not kill its
		// children: --all must.
		s.Linux.Namespaces = s.Linux.Namespaces[1:]
		if rootless {
			// Only the owner of the host's pid namespace (real root) may
			// mount a procfs for it: bind the host's /proc instead, as
			// rootless Podman does for --pid=host.
			s.Mounts[0] = specs.Mount{Destination: "/proc", Type: "bind", Source: "/proc", Options: []string{"rbind", "nosuid", "noexec", "nodev"}}
		}
	})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) < 4 && time.Now().Before(deadline) {
		pids = e.pids(id)
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) < 4 {
		t.Fatalf("ps --format json: %v, want 4 processes", pids)
	}
	e.moat("kill", "--all", id, "KILL")
	for _, p := range pids {
		if !waitGone(p, 10*time.Second) {
			t.Errorf("process %d survived kill --all", p)
		}
	}
	e.moat("delete", "--force", id)
}

func TestBootKilledKillsContainer(t *testing.T) {
	e := newEnv(t)
	killBootAndWait(e, e.newBundle([]string{"hold", "60"}))
}

// The parent-death signal survives the switch to a non-root user also when
// the seccomp filter goes in before it (no no_new_privs: Docker's default).
func TestBootKilledKillsNonRootContainer(t *testing.T) {
	needSubIDs(t, "runs the container as uid 1000")
	e := newEnv(t)
	killBootAndWait(e, e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Process.User.UID, s.Process.User.GID = 1000, 1000
		s.Process.NoNewPrivileges = false
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"vhangup"}, Action: specs.ActErrno}}}
	}))
}

// killBootAndWait runs b detached, kills its boot and expects the container
// process to die with it.
func killBootAndWait(e *env, b *bundle) {
	t := e.t
	id := e.id()
	pidFile := filepath.Join(e.dir, "pid-"+id)
	e.moat("run", "-d", "--bundle", b.dir, "--pid-file", pidFile, id)
	initPid := readPid(t, pidFile)
	bootPid := parentOf(t, initPid)
	must(t, syscall.Kill(bootPid, syscall.SIGKILL))
	if !waitGone(initPid, 10*time.Second) {
		t.Fatalf("container process %d survived its boot", initPid)
	}
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
}

func TestRunForwardsSignals(t *testing.T) {
	e := newEnv(t)
	ready := filepath.Join(e.dir, "ready")
	b := e.newBundle([]string{"signals", "--ready", "/tmp/ready"}, func(s *specsSpec) {
		bindMount(s, e.dir, "/tmp", "rw")
	})
	cmd := exec.Command(moatBin, append(append([]string{"--root", e.root}, e.globals...), "run", "--bundle", b.dir, e.id())...)
	var out strings.Builder
	cmd.Stdout = &out
	must(t, cmd.Start())
	waitFile(t, ready)
	cmd.Process.Signal(syscall.SIGUSR1)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("moat run: %v", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("moat run did not end after SIGTERM")
	}
	if !strings.Contains(out.String(), "SIGUSR1") || !strings.Contains(out.String(), "SIGTERM") {
		t.Errorf("signals not forwarded: %q", out.String())
	}
}

func TestRunDetachAndKeep(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"exit", "3"})
	id := e.id()
	r := e.run(nil, "run", "--keep", "--bundle", b.dir, id)
	if r.code != 3 {
		t.Fatalf("run --keep: %s", r)
	}
	if e.status(id) != "stopped" {
		t.Errorf("kept container is %s", e.status(id))
	}
	e.moat("delete", id)
}

// ---- helpers ----

func readPid(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	must(t, err)
	return pid
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(t, err)
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func ns(t *testing.T, pid int, name string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
	must(t, err)
	return l
}

// waitGone waits until pid no longer runs (zombies count as gone).
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		s := string(data)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); len(f) > 0 && f[0] == "Z" {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// waitExit waits for a process that is not our child; its status is not
// observable, so -1 is returned once it is gone.
func waitExit(t *testing.T, pid int) int {
	if !waitGone(pid, 10*time.Second) {
		t.Fatalf("process %d did not exit", pid)
	}
	return -1
}

// pids returns `ps --format json`.
func (e *env) pids(id string) []int {
	e.t.Helper()
	var pids []int
	out := e.moat("ps", "--format", "json", id)
	s := strings.Trim(strings.TrimSpace(out), "[]")
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// runDetachedOutput runs a container in the foreground in the background,
// collecting its stdout (in a file: no racing reader); wait blocks until moat
// run returns.
func (e *env) runDetachedOutput(b *bundle, id string) (out func() string, wait func()) {
	bg := startMoat(e, nil, "run", "--bundle", b.dir, id)
	return bg.out, func() { bg.wait() }
}

// TestNoExecutableCopyWhileRunning: once the container runs, boot holds no
// sealed copy of moat (it would cost the binary's size per container), the
// gofer runs boot's own executable, and exec still works (from the
// read-only mount boot keeps as real root, else from a fresh copy).
func TestNoExecutableCopyWhileRunning(t *testing.T) {
	needRoot(t, "reads the fds of non-dumpable moat processes")
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	pidFile := filepath.Join(e.dir, "pid")
	e.moat("run", "--detach", "--pid-file", pidFile, "--bundle", b.dir, id)
	boot := parentOf(t, readPid(t, pidFile))
	memfds := func(pid int) []string {
		var out []string
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, en := range ents {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, en.Name())); err == nil && strings.HasPrefix(l, "/memfd:moat") {
				out = append(out, l)
			}
		}
		return out
	}
	if m := memfds(boot); len(m) > 0 {
		t.Errorf("boot holds a copy of moat while the container runs: %v", m)
	}
	if fileAccess == "gofer" {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", findGofer(t, b.dir)))
		must(t, err)
		if strings.HasPrefix(exe, "/memfd:") {
			t.Errorf("the gofer runs from %s, want boot's executable", exe)
		}
	}
	if out := e.moat("exec", id, "probe", "echo", "still"); out != "still\n" {
		t.Errorf("exec after start printed %q", out)
	}
	if m := memfds(boot); len(m) > 0 {
		t.Errorf("boot kept the exec copy of moat: %v", m)
	}
}

// A foreground run as root hosts boot in its own process (no `moat boot`:
// init is the run's child), and that process still does boot's part for
// other moat commands: exec goes through its controller socket, and a
// delete --force from elsewhere ends the run by itself (it must not wait
// for the container's lock, held by that delete while it waits for the
// run to exit, and be killed). Rootless, boot keeps a process of its own
// (its user namespace).
func TestRunHostsBoot(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	pidFile := filepath.Join(e.dir, "pid-"+id)
	cmd := exec.Command(moatBin, append(append([]string{"--root", e.root}, e.globals...), "run", "--pid-file", pidFile, "--bundle", b.dir, id)...)
	must(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	}()
	waitFile(t, pidFile) // written once the state is
	e.waitStatus(id, "running")
	initPid := readPid(t, pidFile)
	parent := parentOf(t, initPid)
	if hosted := parent == cmd.Process.Pid; hosted == rootless {
		t.Errorf("init's parent is %d, the run is %d: boot hosted = %v, want %v (rootless %v)", parent, cmd.Process.Pid, hosted, !rootless, rootless)
	}
	if r := e.run(nil, "exec", id, "probe", "exit", "5"); r.code != 5 {
		t.Errorf("exec through the run's controller: %s", r)
	}
	e.moat("delete", "--force", id)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("moat run did not end after delete --force")
	}
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Errorf("moat run was killed (%v) instead of ending with its container", ws.Signal())
	} else if ws.ExitStatus() != 137 {
		t.Errorf("moat run exited %d, want 137 (the container's SIGKILL)", ws.ExitStatus())
	}
	if r := e.run(nil, "state", id); r.code == 0 {
		t.Errorf("state of %s still there after delete --force: %s", id, r)
	}
}
