package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ---- helpers shared by exec, tty, misc, badinput and security tests ----

// bgMoat is a moat command running in the background; its output goes to
// files (a detached container may keep writing to them after moat exits).
type bgMoat struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr string
	done           chan struct{}
}

// moatCmd builds a moat command with the env's root and globals; extra
// become fds 3.. of moat.
func moatCmd(e *env, extra []*os.File, args ...string) *exec.Cmd {
	full := append([]string{"--root", e.root}, e.globals...)
	cmd := exec.Command(moatBin, append(full, args...)...)
	cmd.ExtraFiles = extra
	return cmd
}

// startBg starts cmd with stdout and stderr going to fresh files in e.dir.
func startBg(e *env, cmd *exec.Cmd) *bgMoat {
	e.t.Helper()
	out, err := os.CreateTemp(e.dir, "stdout-")
	must(e.t, err)
	errf, err := os.CreateTemp(e.dir, "stderr-")
	must(e.t, err)
	defer out.Close()
	defer errf.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = errf
	}
	p := &bgMoat{t: e.t, cmd: cmd, stdout: out.Name(), stderr: errf.Name(), done: make(chan struct{})}
	must(e.t, cmd.Start())
	go func() { cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// startMoat starts moat in the background (see moatCmd).
func startMoat(e *env, extra []*os.File, args ...string) *bgMoat {
	e.t.Helper()
	return startBg(e, moatCmd(e, extra, args...))
}

// wait waits for the command and returns its result.
func (p *bgMoat) wait() result {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(cmdTimeout):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%v timed out", p.cmd.Args)
	}
	return result{stdout: p.out(), stderr: p.errOut(), code: p.cmd.ProcessState.ExitCode()}
}

func (p *bgMoat) out() string {
	data, _ := os.ReadFile(p.stdout)
	return string(data)
}

func (p *bgMoat) errOut() string {
	data, _ := os.ReadFile(p.stderr)
	return string(data)
}

// runMoatWith runs moat with extra fds and environment, and waits.
func runMoatWith(e *env, extra []*os.File, environ []string, args ...string) result {
	e.t.Helper()
	cmd := moatCmd(e, extra, args...)
	cmd.Env = environ
	return startBg(e, cmd).wait()
}

// holding starts a detached container running `probe hold 600` and returns
// its id.
func holding(e *env, mutate ...func(*specsSpec)) (string, *bundle) {
	e.t.Helper()
	b := e.newBundle([]string{"hold", "600"}, mutate...)
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	return id, b
}

// sharedDir makes a host directory bound read-write at /shared.
func sharedDir(e *env) (string, func(*specsSpec)) {
	dir := filepath.Join(e.dir, "shared")
	must(e.t, os.MkdirAll(dir, 0o777))
	return dir, func(s *specsSpec) { bindMount(s, dir, "/shared", "rw") }
}

// decodeJSON decodes one JSON line printed by the probe.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), v); err != nil {
		t.Fatalf("probe printed %q: %v", out, err)
	}
}

// execJSON runs `moat exec PRE... probe ARGS...` (PRE: flags and the id)
// and decodes its output.
func execJSON(e *env, v any, pre []string, args ...string) {
	e.t.Helper()
	out := e.moat(append(append(append([]string{"exec"}, pre...), "probe"), args...)...)
	decodeJSON(e.t, out, v)
}

// fdsOf decodes `probe fds`.
func fdsOf(t *testing.T, out string) map[string]string {
	t.Helper()
	var v struct {
		Fds map[string]string `json:"fds"`
	}
	decodeJSON(t, out, &v)
	return v.Fds
}

// tempFiles creates n named files in e.dir, open for reading.
func tempFiles(e *env, names ...string) []*os.File {
	var out []*os.File
	for _, n := range names {
		p := filepath.Join(e.dir, n)
		must(e.t, os.WriteFile(p, []byte(n), 0o644))
		f, err := os.Open(p)
		must(e.t, err)
		e.t.Cleanup(func() { f.Close() })
		out = append(out, f)
	}
	return out
}

// checkPreserved asserts fds are exactly 0..2 plus 3.. pointing at names.
func checkPreserved(t *testing.T, fds map[string]string, names ...string) {
	t.Helper()
	if len(fds) != 3+len(names) {
		t.Errorf("container has fds %v; want stdio and %d preserved", fds, len(names))
	}
	for i, n := range names {
		if got := fds[fmt.Sprint(3+i)]; !strings.HasSuffix(got, "/"+n) {
			t.Errorf("fd %d is %q, want the file %s", 3+i, got, n)
		}
	}
}

// ---- exec tests ----

func TestExecArgsForm(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	if r := e.run(nil, "exec", id, "probe", "exit", "5"); r.code != 5 {
		t.Errorf("exec probe exit 5: %s", r)
	}
	if out := e.moat("exec", id, "probe", "echo", "hello", "exec"); out != "hello exec\n" {
		t.Errorf("exec echo printed %q", out)
	}
	r := e.run(nil, "exec", id, "--", "probe", "cat", "/no/such/file")
	if r.code != 1 || !strings.Contains(r.stderr, "/no/such/file") || r.stdout != "" {
		t.Errorf("exec probe cat of a missing file: want its error on stderr, exit 1\n%s", r)
	}
}

func TestExecOverrides(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e, func(s *specsSpec) { s.Process.NoNewPrivileges = false })
	env := e.moat("exec", "--env", "FOO=bar", "-e", "BAZ=1", id, "probe", "env")
	for _, want := range []string{"FOO=bar", "BAZ=1", "PATH=/bin", "TERM=xterm"} {
		if !slices.Contains(strings.Split(env, "\n"), want) {
			t.Errorf("exec --env: %q missing from %q", want, env)
		}
	}
	if cwd := e.moat("exec", "--cwd", "/tmp", id, "probe", "cwd"); cwd != "/tmp\n" {
		t.Errorf("exec --cwd /tmp: cwd %q", cwd)
	}
	e.fails("--user", "exec", "--user", "bob", id, "probe", "id")
	t.Run("user", func(t *testing.T) {
		needSubIDs(t, "exec --user 1000:1000 needs container uid and gid 1000")
		e := e.in(t)
		var ident struct{ UID, GID, EUID, EGID int }
		execJSON(e, &ident, []string{"--user", "1000:1000", id}, "id")
		if ident.UID != 1000 || ident.GID != 1000 || ident.EUID != 1000 || ident.EGID != 1000 {
			t.Errorf("exec --user 1000:1000: %+v", ident)
		}
	})
}

type capsOut struct {
	Names map[string][]string `json:"names"`
}

func TestExecCapAndNoNewPrivs(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e, func(s *specsSpec) { s.Process.NoNewPrivileges = false })
	var plain, added capsOut
	execJSON(e, &plain, []string{id}, "caps")
	execJSON(e, &added, []string{"--cap", "CAP_SYS_ADMIN", id}, "caps")
	if slices.Contains(plain.Names["bnd"], "CAP_SYS_ADMIN") {
		t.Errorf("CAP_SYS_ADMIN in the bounding set without --cap: %v", plain.Names)
	}
	for _, set := range []string{"bnd", "eff", "prm"} {
		if !slices.Contains(added.Names[set], "CAP_SYS_ADMIN") {
			t.Errorf("exec --cap CAP_SYS_ADMIN: not in %s: %v", set, added.Names[set])
		}
		if !slices.Contains(added.Names[set], "CAP_KILL") {
			t.Errorf("exec --cap dropped the container's CAP_KILL from %s", set)
		}
	}
	var st struct{ NNP int }
	execJSON(e, &st, []string{id}, "status")
	if st.NNP != 0 {
		t.Errorf("no_new_privs set without --no-new-privs (spec has it off)")
	}
	execJSON(e, &st, []string{"--no-new-privs", id}, "status")
	if st.NNP != 1 {
		t.Errorf("exec --no-new-privs: NoNewPrivs %d", st.NNP)
	}
}

// writeProcess writes a process.json for exec --process.
func writeProcess(e *env, p map[string]any) string {
	data, err := json.Marshal(p)
	must(e.t, err)
	f, err := os.CreateTemp(e.dir, "process-*.json")
	must(e.t, err)
	defer f.Close()
	_, err = f.Write(data)
	must(e.t, err)
	return f.Name()
}

func TestExecProcessJSON(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	// A single-ID map has only container uid 0: the process's user is
	// checked in the subtest, the rest as root there.
	uid := 1000
	if singleIDMap {
		uid = 0
	}
	proc := func(args ...string) string {
		return writeProcess(e, map[string]any{
			"terminal": false, "args": append([]string{"/bin/probe"}, args...),
			"env": []string{"A=1", "PATH=/bin"}, "cwd": "/tmp",
			"user": map[string]int{"uid": uid, "gid": uid},
		})
	}
	env := strings.Split(e.moat("exec", "--process", proc("env"), id), "\n")
	if !slices.Contains(env, "A=1") || slices.Contains(env, "TERM=xterm") {
		t.Errorf("--process env: %q (want A=1 and not the container's TERM)", env)
	}
	if cwd := e.moat("exec", "-p", proc("cwd"), id); cwd != "/tmp\n" {
		t.Errorf("--process cwd: %q", cwd)
	}
	if r := e.run(nil, "exec", "--process", proc("exit", "9"), id); r.code != 9 {
		t.Errorf("--process exit 9: %s", r)
	}
	bad := writeProcess(e, map[string]any{"args": []string{"/bin/probe"}, "cwd": "tmp"})
	e.fails("cwd", "exec", "--process", bad, id)
	e.fails("no-such.json", "exec", "--process", filepath.Join(e.dir, "no-such.json"), id)
	t.Run("user", func(t *testing.T) {
		needSubIDs(t, "a process.user of uid and gid 1000 needs them mapped")
		e := e.in(t)
		var ident struct{ UID, GID int }
		decodeJSON(t, e.moat("exec", "--process", proc("id"), id), &ident)
		if ident.UID != 1000 || ident.GID != 1000 {
			t.Errorf("--process user: %+v", ident)
		}
	})
}

func TestExecStoppedContainer(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	id := e.id()
	e.moat("run", "--keep", "--bundle", b.dir, id)
	e.fails("stopped", "exec", id, "probe", "true")
	e.fails("does not exist", "exec", "nosuch-"+id, "probe", "true")
	e.moat("delete", id)
}

func TestExecErrors(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	r := e.fails("nosuchcmd", "exec", id, "nosuchcmd", "arg")
	if !strings.Contains(r.stderr, "not found") {
		t.Errorf("exec of a missing command: %q does not say not found", r.stderr)
	}
	e.fails("/bin/nosuch", "exec", id, "/bin/nosuch")
	e.fails("/nonexistent", "exec", "--cwd", "/nonexistent", id, "probe", "true")
	e.fails("COMMAND", "exec", id)
	if e.status(id) != "running" {
		t.Errorf("failed execs disturbed the container: %s", e.status(id))
	}
	if pids := e.pids(id); len(pids) != 1 {
		t.Errorf("failed execs left processes in the container: %v", pids)
	}
}

func TestExecJoinsContainer(t *testing.T) {
	e := newEnv(t)
	id, b := holding(e)
	must(t, os.WriteFile(filepath.Join(b.rootfs(), "etc/marker"), []byte("inside"), 0o644))
	var pid struct{ Pid, Ppid int }
	execJSON(e, &pid, []string{id}, "pid")
	if pid.Pid <= 1 || pid.Pid > 100 || pid.Ppid != 0 {
		t.Errorf("exec'd process has pid %d ppid %d in the container; want a small pid, parent outside", pid.Pid, pid.Ppid)
	}
	if out := e.moat("exec", id, "probe", "cat", "/etc/marker"); out != "inside" {
		t.Errorf("exec does not see the container's files: %q", out)
	}
	var host struct{ Hostname string }
	execJSON(e, &host, []string{id}, "hostname")
	if host.Hostname != "moat-test" {
		t.Errorf("exec hostname %q, want the container's", host.Hostname)
	}
	pidFile := filepath.Join(e.dir, "exec.pid")
	p := startMoat(e, nil, "exec", "--pid-file", pidFile, id, "probe", "hold", "60")
	waitFile(t, pidFile)
	hostPid := readPid(t, pidFile)
	initPid := int(e.state(id)["pid"].(float64))
	for _, n := range []string{"pid", "net", "uts", "ipc", "mnt", "cgroup"} {
		if ns(t, hostPid, n) != ns(t, initPid, n) {
			t.Errorf("exec'd process is not in the container's %s namespace", n)
		}
	}
	if pids := e.pids(id); !slices.Contains(pids, hostPid) {
		t.Errorf("ps --format json %v lacks the exec'd process %d", pids, hostPid)
	}
	must(t, syscall.Kill(hostPid, syscall.SIGKILL))
	if r := p.wait(); r.code != 137 {
		t.Errorf("exec of a killed process: %s, want exit 137", r)
	}
}

func TestExecForwardsSignals(t *testing.T) {
	e := newEnv(t)
	dir, mnt := sharedDir(e)
	id, _ := holding(e, mnt)
	p := startMoat(e, nil, "exec", id, "probe", "signals", "--ready", "/shared/ready")
	waitFile(t, filepath.Join(dir, "ready"))
	p.cmd.Process.Signal(syscall.SIGUSR1)
	waitOutput(t, p.out, "SIGUSR1", 1)
	p.cmd.Process.Signal(syscall.SIGTERM)
	r := p.wait()
	if r.code != 0 || !strings.Contains(r.stdout, "SIGUSR1") || !strings.Contains(r.stdout, "SIGTERM") {
		t.Errorf("signals to moat exec not forwarded: %s", r)
	}
}

func TestExecPreserveFds(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	files := tempFiles(e, "pfd-a", "pfd-b")
	r := runMoatWith(e, files, nil, "exec", "--preserve-fds", "2", id, "probe", "fds")
	if r.code != 0 {
		t.Fatalf("exec --preserve-fds 2: %s", r)
	}
	checkPreserved(t, fdsOf(t, r.stdout), "pfd-a", "pfd-b")
	r = runMoatWith(e, files, nil, "exec", id, "probe", "fds")
	checkPreserved(t, fdsOf(t, r.stdout))
}

// subreaper makes the test process adopt orphaned descendants (like a
// containerd shim) until the test ends.
func subreaper(t *testing.T) {
	must(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// reap waits for an adopted child and returns its wait status. Like a
// shim, it may ask before the process is adopted (ECHILD): it asks again.
func reap(t *testing.T, pid int) unix.WaitStatus {
	t.Helper()
	res := make(chan unix.WaitStatus, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err == unix.ECHILD {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
					continue
				}
			}
			if err != unix.EINTR {
				if err != nil {
					t.Errorf("wait4 %d: %v", pid, err)
				}
				res <- ws
				return
			}
		}
	}()
	select {
	case ws := <-res:
		return ws
	case <-time.After(30 * time.Second):
		unix.Kill(pid, unix.SIGKILL)
		t.Fatalf("process %d did not exit", pid)
	}
	return 0
}

func TestExecDetachProxy(t *testing.T) {
	e := newEnv(t)
	dir, mnt := sharedDir(e)
	id, _ := holding(e, mnt)
	subreaper(t)
	pidFile := filepath.Join(e.dir, "proxy.pid")
	out := filepath.Join(dir, "out")
	outF, err := os.Create(out)
	must(t, err)
	cmd := moatCmd(e, nil, "exec", "--detach", "--pid-file", pidFile, id, "probe", "signals", "--ready", "/shared/ready")
	cmd.Stdout = outF
	r := startBg(e, cmd).wait()
	outF.Close()
	if r.code != 0 {
		t.Fatalf("exec --detach: %s", r)
	}
	proxy := readPid(t, pidFile)
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", proxy))
	if !strings.Contains(string(cl), "exec-proxy") {
		t.Errorf("pid file names %d (%q), want the moat exec-proxy", proxy, cl)
	}
	if slices.Contains(e.pids(id), proxy) {
		t.Errorf("the proxy %d runs inside the container", proxy)
	}
	waitFile(t, filepath.Join(dir, "ready"))
	// Give the proxy time to set up: signalling it at once is
	// TestExecDetachSignalRightAway.
	time.Sleep(500 * time.Millisecond)
	must(t, syscall.Kill(proxy, syscall.SIGUSR1))
	time.Sleep(100 * time.Millisecond)
	must(t, syscall.Kill(proxy, syscall.SIGTERM))
	if ws := reap(t, proxy); !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("proxy wait status %v, want exit 0 (probe signals exits 0 on SIGTERM)", ws)
	}
	got, _ := os.ReadFile(out)
	if !strings.Contains(string(got), "SIGUSR1") || !strings.Contains(string(got), "SIGTERM") {
		t.Errorf("signals to the proxy did not reach the exec'd process: %q", got)
	}
}

func TestExecDetachExitStatus(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	subreaper(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"exit", "5"}, 5},
		{[]string{"exitsig", "KILL"}, 137},
		{[]string{"true"}, 0},
	} {
		pidFile := filepath.Join(e.dir, "proxy-"+tc.args[0]+".pid")
		e.moat(append([]string{"exec", "-d", "--pid-file", pidFile, id, "probe"}, tc.args...)...)
		ws := reap(t, readPid(t, pidFile))
		if !ws.Exited() || ws.ExitStatus() != tc.code {
			t.Errorf("exec -d probe %v: proxy wait status %v, want exit %d", tc.args, ws, tc.code)
		}
	}
}

// TestExecDetachSignalRightAway: a shim may signal the pid in --pid-file as
// soon as `exec --detach` returns; the proxy must already forward it (and
// not die of it, leaving the exec'd process behind).
func TestExecDetachSignalRightAway(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	subreaper(t)
	for i := 0; i < 5; i++ {
		pidFile := filepath.Join(e.dir, fmt.Sprintf("proxy-%d.pid", i))
		e.moat("exec", "-d", "--pid-file", pidFile, id, "probe", "hold", "600")
		proxy := readPid(t, pidFile)
		must(t, syscall.Kill(proxy, syscall.SIGTERM))
		ws := reap(t, proxy)
		if !ws.Exited() || ws.ExitStatus() != 128+int(syscall.SIGTERM) {
			t.Errorf("proxy wait status %v after SIGTERM, want exit 143 (the exec'd process's)", ws)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.pids(id)) > 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := e.pids(id); len(pids) != 1 {
		t.Errorf("exec'd processes outlived their proxies: container pids %v", pids)
	}
}

// TestExecDetachProxyKilled: SIGKILL cannot be forwarded; a shim that kills
// the pid it was given (the proxy) must not leave the exec'd process running
// in the container.
func TestExecDetachProxyKilled(t *testing.T) {
	e := newEnv(t)
	dir, mnt := sharedDir(e)
	id, _ := holding(e, mnt)
	subreaper(t)
	pidFile := filepath.Join(e.dir, "proxy.pid")
	e.moat("exec", "-d", "--pid-file", pidFile, id, "probe", "signals", "--ready", "/shared/ready")
	waitFile(t, filepath.Join(dir, "ready"))
	proxy := readPid(t, pidFile)
	must(t, syscall.Kill(proxy, syscall.SIGKILL))
	reap(t, proxy)
	deadline := time.Now().Add(5 * time.Second)
	for len(e.pids(id)) > 1 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := e.pids(id); len(pids) != 1 {
		t.Errorf("the exec'd process outlived its killed proxy: container pids %v", pids)
	}
}

// TestExecSandboxNetNamespace: with the sandbox network, an exec'd process
// is in the container's network namespace. Boot creates the TAP from a
// thread that joins that namespace; when that thread was boot's main one,
// /proc/self showed the container's namespace as boot's own, exec skipped
// it as shared, and the exec'd process ran in the host's network, outside
// the egress policy (seen rootless, single-ID map, about one run in two).
func TestExecSandboxNetNamespace(t *testing.T) {
	for i := 0; i < 6; i++ {
		e := newEnv(t)
		e.globals = append(e.globals, "--network=sandbox")
		id, _ := holding(e)
		pidFile := filepath.Join(e.dir, "exec.pid")
		p := startMoat(e, nil, "exec", "--pid-file", pidFile, id, "probe", "hold", "60")
		waitFile(t, pidFile)
		pid := readPid(t, pidFile)
		if got, want := ns(t, pid, "net"), ns(t, initPidOf(e, id), "net"); got != want {
			t.Errorf("container %d: exec'd process in network namespace %s, init in %s", i, got, want)
		}
		must(t, syscall.Kill(pid, syscall.SIGKILL))
		p.wait()
		e.moat("delete", "--force", id)
	}
}

// TestExecSharedNamespaces: exec joins only the namespaces the container
// has of its own. A spec sharing one with the host (`runc spec --rootless`
// has no network namespace) gets an exec'd process in the host's, as init
// is; joining it again failed with EPERM rootless.
func TestExecSharedNamespaces(t *testing.T) {
	kinds := []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.IPCNamespace,
		specs.UTSNamespace, specs.CgroupNamespace}
	if !rootless {
		// Rootless, /proc cannot be mounted for the host's pid namespace.
		kinds = append(kinds, specs.PIDNamespace)
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			e := newEnv(t)
			id, _ := holding(e, func(s *specsSpec) {
				s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == kind })
				switch kind {
				case specs.NetworkNamespace:
					// As `runc spec --rootless`: sysfs needs a network
					// namespace of one's own; the host's /sys is bound.
					for i, m := range s.Mounts {
						if m.Destination == "/sys" {
							s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys",
								Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
						}
					}
				case specs.UTSNamespace:
					s.Hostname = ""
				case specs.IPCNamespace:
					s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Type == "mqueue" })
				}
			})
			if out := e.moat("exec", id, "probe", "echo", "hi"); out != "hi\n" {
				t.Fatalf("exec printed %q", out)
			}
			pidFile := filepath.Join(e.dir, "exec.pid")
			p := startMoat(e, nil, "exec", "--pid-file", pidFile, id, "probe", "hold", "60")
			waitFile(t, pidFile)
			pid := readPid(t, pidFile)
			name := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc",
				specs.UTSNamespace: "uts", specs.CgroupNamespace: "cgroup", specs.PIDNamespace: "pid"}[kind]
			if ns(t, pid, name) != ns(t, os.Getpid(), name) {
				t.Errorf("exec'd process is not in the %s namespace the container shares with the host", name)
			}
			if ns(t, pid, "mnt") == ns(t, os.Getpid(), "mnt") {
				t.Error("exec'd process is not in the container's mount namespace")
			}
			must(t, syscall.Kill(pid, syscall.SIGKILL))
			p.wait()
		})
	}
}
