package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// `moat do` tests. The host's /tmp is replaced in the sandbox, so the trees
// a test writes to live under /var/tmp (the host's disk, seen through the
// gofer), and the probe's directory is re-exposed with --ro.

// doEnv is a test's state root plus a host directory outside /tmp.
type doEnv struct {
	*env
	host string // a fresh directory under /var/tmp
}

func newDoEnv(t *testing.T) *doEnv {
	t.Helper()
	if fileAccess != "gofer" {
		t.Skip("moat do serves host files through the gofer only")
	}
	e := newEnv(t)
	dir, err := os.MkdirTemp("/var/tmp", "moat-e2e-do-")
	must(t, err)
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &doEnv{env: e, host: dir}
}

// do runs `moat do` with the probe's directory visible.
func (e *doEnv) do(args ...string) result {
	full := append([]string{"do", "--ro", filepath.Dir(probeBin)}, args...)
	return e.run(nil, full...)
}

// stateEmpty fails unless the state root holds nothing.
func (e *doEnv) stateEmpty() {
	e.t.Helper()
	ents, _ := os.ReadDir(e.root)
	if len(ents) > 0 {
		var names []string
		for _, d := range ents {
			names = append(names, d.Name())
		}
		e.t.Fatalf("state root not empty after moat do: %v", names)
	}
}

func TestDoExitStatus(t *testing.T) {
	e := newDoEnv(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"status", []string{probeBin, "exit", "7"}, 7, ""},
		{"success", []string{probeBin, "true"}, 0, ""},
		{"signal", []string{probeBin, "exitsig", "SIGTERM"}, 128 + 15, ""},
		{"missing", []string{"moat-no-such-command"}, 127, "moat-no-such-command: command not found"},
		{"timeout", []string{"--timeout", "1s", "--", probeBin, "sleep", "30"}, 124, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			de := &doEnv{env: e.in(t), host: e.host}
			r := de.do(c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.err) {
				t.Fatalf("want exit %d and %q on stderr; got %s", c.code, c.err, r)
			}
			de.stateEmpty()
		})
	}
}

func TestDoStdio(t *testing.T) {
	e := newDoEnv(t)
	r := e.run(strings.NewReader("through stdin\n"), "do", "--ro", filepath.Dir(probeBin), "--", probeBin, "cat")
	if r.code != 0 || r.stdout != "through stdin\n" {
		t.Fatalf("stdin was not passed through: %s", r)
	}
	// cwd defaults to the current directory (the test's, under /var/tmp)
	r = e.do("--cwd", e.host, "--", probeBin, "cwd")
	if r.code != 0 || strings.TrimSpace(r.stdout) != e.host {
		t.Fatalf("--cwd %s: %s", e.host, r)
	}
}

// A signal to `moat do` reaches the command (not pid 1's ignore-by-default).
func TestDoSignalForwarded(t *testing.T) {
	e := newDoEnv(t)
	done := make(chan result, 1)
	cmd := []string{"do", "--ro", filepath.Dir(probeBin), "--", probeBin, "sleep", "60"}
	go func() { done <- e.run(nil, cmd...) }()
	// Find the CLI (moat ... do) and signal it once its sandbox runs.
	deadline := time.Now().Add(30 * time.Second)
	var pid int
	for pid == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		pid = findProcess(e.root, "do")
		if pid != 0 && len(listState(e.root)) == 0 {
			pid = 0 // not created yet
		}
	}
	if pid == 0 {
		t.Fatal("moat do did not start")
	}
	time.Sleep(500 * time.Millisecond)
	must(t, unix.Kill(pid, unix.SIGTERM))
	select {
	case r := <-done:
		if r.code != 128+15 {
			t.Fatalf("SIGTERM to moat do: want exit 143; got %s", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("SIGTERM to moat do did not end the command")
	}
	e.stateEmpty()
}

// Once the command runs, a signal to `moat do` is the command's to handle
// (the reaper forwards it): a command that catches SIGUSR1 and SIGTERM
// sees both and exits 0, where a sandbox killed on the signal would end
// with 128+N. The command's "ready" says it runs: no guessed delay.
func TestDoSignalReachesCommand(t *testing.T) {
	e := newDoEnv(t)
	p := startBg(e.env, moatCmd(e.env, nil, "do", "--ro", filepath.Dir(probeBin), "--", probeBin, "signals"))
	waitOutput(t, p.out, "ready", 1)
	must(t, p.cmd.Process.Signal(unix.SIGUSR1))
	waitOutput(t, p.out, "SIGUSR1", 1)
	must(t, p.cmd.Process.Signal(unix.SIGTERM))
	r := p.wait()
	if r.code != 0 || !strings.Contains(r.stdout, "SIGTERM") {
		t.Fatalf("SIGUSR1 then SIGTERM to moat do: want both handled by the command and exit 0; got %s", r)
	}
	e.stateEmpty()
}

// findProcess is the pid of a moat process with this state root running
// the subcommand, or 0.
func findProcess(root, sub string) int {
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil {
			continue
		}
		cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cl), "\x00")
		if len(args) > 3 && args[0] == moatBin && args[1] == "--root" && args[2] == root && contains(args, sub) {
			return pid
		}
	}
	return 0
}

func listState(root string) []string {
	ents, _ := os.ReadDir(root)
	var out []string
	for _, d := range ents {
		if d.IsDir() {
			out = append(out, d.Name())
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Writes outside --rw stay in the sandbox; writes inside reach the host.
func TestDoWritesStayInside(t *testing.T) {
	e := newDoEnv(t)
	ro, rw := filepath.Join(e.host, "ro"), filepath.Join(e.host, "rw")
	must(t, os.Mkdir(ro, 0o777))
	must(t, os.Mkdir(rw, 0o777))
	must(t, os.WriteFile(filepath.Join(ro, "old"), []byte("host"), 0o666))
	script := fmt.Sprintf(`set -e
echo sandbox > %[1]s/old; echo new > %[1]s/new; cat %[1]s/old
echo reached > %[2]s/out`, ro, rw)
	r := e.do("--rw", rw, "--", "sh", "-c", script)
	if r.code != 0 || r.stdout != "sandbox\n" {
		t.Fatalf("writes inside the sandbox: %s", r)
	}
	if data, _ := os.ReadFile(filepath.Join(ro, "old")); string(data) != "host" {
		t.Errorf("a write outside --rw reached the host: %q", data)
	}
	if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
		t.Errorf("a file created outside --rw reached the host")
	}
	if data, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(data) != "reached\n" {
		t.Errorf("a write in --rw did not reach the host: %q %v", data, err)
	}
	e.stateEmpty()
}

// Hidden paths read as empty; credentials are hidden by default.
func TestDoHides(t *testing.T) {
	e := newDoEnv(t)
	home := filepath.Join(e.host, "home")
	must(t, os.MkdirAll(filepath.Join(home, ".ssh"), 0o700))
	must(t, os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), []byte("PRIVATE KEY"), 0o600))
	must(t, os.WriteFile(filepath.Join(home, ".netrc"), []byte("machine x password y"), 0o600))
	secretDir := filepath.Join(e.host, "secret")
	must(t, os.Mkdir(secretDir, 0o755))
	must(t, os.WriteFile(filepath.Join(secretDir, "f"), []byte("s"), 0o644))
	plain := filepath.Join(e.host, "plain")
	must(t, os.WriteFile(plain, []byte("p"), 0o644))
	script := fmt.Sprintf(`ls -A %[1]s/.ssh; cat %[1]s/.ssh/id_ed25519 2>/dev/null; echo "netrc=[$(cat %[1]s/.netrc)]"; ls -A %[2]s; echo "plain=[$(cat %[3]s)]"`, home, secretDir, plain)
	r := e.runEnv([]string{"HOME=" + home}, "do", "--hide", secretDir, "--hide", plain, "--", "sh", "-c", script)
	if r.code != 0 || r.stdout != "netrc=[]\nplain=[]\n" {
		t.Fatalf("hidden paths are not empty: %s", r)
	}
	r = e.runEnv([]string{"HOME=" + home}, "do", "--no-default-hides", "--", "cat", filepath.Join(home, ".ssh", "id_ed25519"))
	if r.code != 0 || r.stdout != "PRIVATE KEY" || !strings.Contains(r.stderr, "not hiding "+filepath.Join(home, ".ssh")) {
		t.Fatalf("--no-default-hides: %s", r)
	}
	// --ro re-exposes a path under a hidden parent.
	r = e.runEnv([]string{"HOME=" + home}, "do", "--hide", home, "--ro", filepath.Join(home, ".netrc"), "--", "sh", "-c", "ls -A "+home+"; cat "+filepath.Join(home, ".netrc"))
	if r.code != 0 || r.stdout != ".netrc\n.ssh\nmachine x password y" {
		t.Fatalf("--ro under a hidden parent: %s", r)
	}
	e.stateEmpty()
}

// runEnv is run with extra environment variables for moat.
func (e *env) runEnv(extra []string, args ...string) result {
	c := *e
	c.environ = append(append([]string{}, e.environ...), extra...)
	return c.run(nil, args...)
}

// Bad input: one line, exit 125, nothing left.
func TestDoBadInput(t *testing.T) {
	e := newDoEnv(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--rw", filepath.Join(e.host, "missing"), "true"}, "--rw " + filepath.Join(e.host, "missing") + ": no such file or directory"},
		{[]string{"--rw", e.host, "--hide", e.host, "true"}, "is given to both --rw and --hide"},
		{[]string{"--egress", "allow=10.0.0.0/8", "true"}, "need --network=sandbox"},
		{[]string{"--network", "bridge", "true"}, `--network "bridge"`},
		{[]string{"--timeout", "soon", "true"}, `--timeout "soon"`},
		{[]string{"--rw", "/proc/self", "true"}, "own /proc"},
		{[]string{"--rw", e.host, "--keep-changes", filepath.Join(e.host, "kept"), "true"}, "inside a --rw path"},
	} {
		r := e.run(nil, append([]string{"do"}, c.args...)...)
		if r.code != 125 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("moat do %v: want exit 125 and one line about %q; got %s", c.args, c.want, r)
		}
	}
	e.stateEmpty()
}

// No network by default: a host loopback listener is unreachable; the
// sandbox has only its own loopback.
func TestDoNoNetwork(t *testing.T) {
	e := newDoEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host"))
			c.Close()
		}
	}()
	r := e.do("--", probeBin, "dial", ln.Addr().String(), "2")
	var res struct {
		OK   bool   `json:"ok"`
		Data string `json:"data"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.OK {
		t.Fatalf("a host loopback listener was reachable (or the probe failed): %s", r)
	}
	r = e.do("--network=host", "--", probeBin, "dial", ln.Addr().String(), "5")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || !res.OK || res.Data != "host" {
		t.Fatalf("--network=host: the host listener was not reachable: %s", r)
	}
}

// What a command inside can reach of the host: no host process, no moat
// state, no way out of a --rw tree through a symlink.
func TestDoAttacks(t *testing.T) {
	e := newDoEnv(t)
	rw := filepath.Join(e.host, "rw")
	outside := filepath.Join(e.host, "outside")
	must(t, os.Mkdir(rw, 0o777))
	must(t, os.WriteFile(outside, []byte("host"), 0o666))
	// A symlink planted in the --rw tree pointing out of it.
	must(t, os.Symlink(outside, filepath.Join(rw, "link")))
	script := fmt.Sprintf(`echo pwned > %[1]s/link; echo pwned > %[1]s/link2 2>/dev/null; ln -s %[2]s %[1]s/link3; echo pwned > %[1]s/link3
ls /proc | grep -c '^[0-9]'; readlink /proc/1/root || echo denied; ls -A %[3]s | wc -l`, rw, outside, e.root)
	r := e.do("--rw", rw, "--", "sh", "-c", script)
	if data, _ := os.ReadFile(outside); string(data) != "host" {
		t.Fatalf("a symlink in a --rw tree wrote outside it: %q (%s)", data, r)
	}
	lines := strings.Fields(r.stdout)
	if len(lines) != 3 {
		t.Fatalf("unexpected output: %s", r)
	}
	// pid 1 (the reaper), sh, ls, grep: never a host process
	if n := lines[0]; n > "5" || len(n) > 1 {
		t.Errorf("the sandbox sees %s processes: host processes are visible", n)
	}
	if lines[1] != "/" && lines[1] != "denied" {
		t.Errorf("/proc/1/root is %q, want the sandbox's / (or no access)", lines[1])
	}
	if lines[2] != "0" {
		t.Errorf("moat's state root (and its controller sockets) is visible: %s entries", lines[2])
	}
	// Kill of a host process from inside: not even visible.
	r = e.do("--", "kill", "-0", fmt.Sprint(os.Getpid()))
	if r.code == 0 {
		t.Errorf("a host process could be signalled from the sandbox")
	}
}

// A terminal on stdin gives the command a terminal of the same size, in
// the foreground; ^C typed there ends the command (130).
func TestDoTty(t *testing.T) {
	e := newDoEnv(t)
	out, code := attached(e.env, "", "do", "--ro", filepath.Dir(probeBin), "--", probeBin, "tty")
	if code != 0 {
		t.Fatalf("moat do on a terminal: exit %d: %q", code, out)
	}
	v := decodeTty(t, out)
	if !v.Stdin || !v.Stdout || !v.Stderr || !v.Ctty || v.Rows != 40 || v.Cols != 120 {
		t.Errorf("the command's terminal: %+v; want stdio on a 40x120 controlling terminal", v)
	}
	master, slave := openPty(t, 40, 120)
	makeRaw(t, slave)
	cmd := moatCmd(e.env, nil, "do", "--ro", filepath.Dir(probeBin), "--", probeBin, "hold", "60")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	p := startBg(e.env, cmd)
	slave.Close()
	// Wait for the command's "ready", then type ^C.
	master.SetReadDeadline(time.Now().Add(30 * time.Second))
	var seen []byte
	buf := make([]byte, 256)
	for !strings.Contains(string(seen), "ready") {
		n, err := master.Read(buf)
		if err != nil {
			t.Fatalf("no ready from the command: %v (%q)", err, seen)
		}
		seen = append(seen, buf[:n]...)
	}
	_, err := master.WriteString("\x03")
	must(t, err)
	if r := p.wait(); r.code != 128+2 {
		t.Fatalf("^C on the terminal: want exit 130; got %d", r.code)
	}
	e.stateEmpty()
}

// --network=sandbox with --egress-domain: only addresses resolved for an
// allowed name are reachable.
func TestDoNetworkSandboxDomain(t *testing.T) {
	ha := hostAddr(t)
	open := greeter(t, ha+":0", "open")
	dns := dnsServer(t, map[string]string{"allowed.moat.test": ha})
	e := newDoEnv(t)
	// The "remote" server is on the host's own address, closed without
	// --allow-host-loopback.
	e.globals = append(e.globals, fmt.Sprintf("--dns=127.0.0.1:%d", dns), "--allow-host-loopback")
	target := fmt.Sprintf("%s:%d", ha, open)
	script := fmt.Sprintf(`%[1]s dial %[2]s 5; %[1]s dns %[3]s allowed.moat.test A; %[1]s dial %[2]s 5`, probeBin, target, gateway)
	r := e.do("--network=sandbox", "--egress-domain=allow=allowed.moat.test", "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("moat do --network=sandbox: %s", r)
	}
	var before, after dialResult
	var d dnsResult
	decodeJSON(t, lines[0], &before)
	decodeJSON(t, lines[1], &d)
	decodeJSON(t, lines[2], &after)
	if before.OK {
		t.Errorf("address reached before an allowed name resolved to it: %+v", before)
	}
	if d.Rcode != 0 || len(d.Answers) != 1 || d.Answers[0].Data != ha {
		t.Errorf("allowed name: %+v", d)
	}
	if !after.OK || after.Data != "hi open\n" {
		t.Errorf("address resolved for an allowed name: %+v", after)
	}
	e.stateEmpty()
}

// --pids and --memory are cgroup limits.
func TestDoLimits(t *testing.T) {
	needCgroups(t, "moat do --pids/--memory")
	e := newDoEnv(t)
	r := e.do("--pids", "8", "--", "sh", "-c", "for i in $(seq 40); do sleep 2 & done; wait; echo end")
	if r.stdout == "end\n" || !strings.Contains(strings.ToLower(r.stderr), "fork") {
		t.Errorf("--pids 8: 40 background processes did not hit the limit: %s", r)
	}
	r = e.do("--memory", "32m", "--", "sh", "-c", "head -c 200000000 /dev/zero | tail -c 1 >/dev/null; x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived")
	if r.code != 128+9 {
		t.Errorf("--memory 32m: 100 MB in a shell variable: want the sandbox killed (137); got %s", r)
	}
	e.stateEmpty()
}

// Without delegated cgroups the limits are skipped with one warning.
func TestDoLimitsWarning(t *testing.T) {
	if !rootless || cgroupWritable() {
		t.Skip("SKIP (this tier has cgroups): the warning is for a tier without them")
	}
	e := newDoEnv(t)
	r := e.do("--memory", "64m", "--", probeBin, "true")
	if r.code != 0 || strings.Count(r.stderr, "warning") != 1 || !strings.Contains(r.stderr, "resource limits are not applied") {
		t.Fatalf("--memory without cgroups: want one warning; got %s", r)
	}
}

// --dry-run prints the spec and starts nothing; --profile holds the flags
// and flags given override it.
func TestDoDryRunProfile(t *testing.T) {
	e := newDoEnv(t)
	profile := filepath.Join(e.host, "profile.json")
	must(t, os.WriteFile(profile, []byte(`{"rw": ["`+e.host+`"], "memory": "1g", "pids": 100, "network": "sandbox"}`), 0o644))
	r := e.run(nil, "do", "--dry-run", "--profile", profile, "--network", "none", "--", "true")
	var s struct {
		Process struct{ Args []string }
		Mounts  []struct {
			Destination, Type string
			Options           []string
		}
		Linux struct {
			Resources struct {
				Memory struct{ Limit int64 }
				Pids   struct{ Limit int64 }
			}
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil {
		t.Fatalf("--dry-run: %s", r)
	}
	if s.Linux.Resources.Memory.Limit != 1<<30 || s.Linux.Resources.Pids.Limit < 100 {
		t.Errorf("the profile's limits are not in the spec: %+v", s.Linux.Resources)
	}
	rw := false
	for _, m := range s.Mounts {
		rw = rw || m.Destination == e.host && contains(m.Options, "rw")
	}
	if !rw || s.Process.Args[len(s.Process.Args)-1] != "true" {
		t.Errorf("the profile's --rw or the command is missing: %s", r.stdout)
	}
	e.stateEmpty()
	r = e.run(nil, "do", "--profile", profile, "--egress", "allow=10.0.0.0/8", "--network", "none", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "need --network=sandbox") {
		t.Errorf("--network given overrides the profile's: %s", r)
	}
	must(t, os.WriteFile(profile, []byte(`{"rww": ["/"]}`), 0o644))
	if r := e.run(nil, "do", "--profile", profile, "true"); r.code != 125 || !strings.Contains(r.stderr, `unknown field "rww"`) {
		t.Errorf("a profile with an unknown setting: %s", r)
	}
}

// changeTree makes the tree the change tests script against.
func changeTree(t *testing.T, dir string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "gone", "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "gone", "sub", "f"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "edit"), []byte("old"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "mode"), []byte("m"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "target"), []byte("t"), 0o644))
	must(t, os.Symlink("target", filepath.Join(dir, "link")))
	must(t, os.Chmod(dir, 0o755))
}

// The changes script: a deleted directory, a modified file, a chmod, a
// replaced symlink, a created tree; and a write outside the tree.
const changeScript = `set -e
rm -rf gone; echo newer >> edit; chmod 755 mode; rm link; ln -s edit link
mkdir -p made/deep; echo fresh > made/deep/file; echo x > /etc/moat-e2e-do`

type changeOut struct {
	Path, Kind, Type string
	Size, OldSize    int64
	Mode             uint32
	Target           string
}

func TestDoChanges(t *testing.T) {
	e := newDoEnv(t)
	tree := filepath.Join(e.host, "tree")
	must(t, os.Mkdir(tree, 0o755))
	changeTree(t, tree)
	r := e.do("--cwd", tree, "--changes", "--format", "json", "--", "sh", "-c", changeScript)
	var got []changeOut
	if r.code != 0 || json.Unmarshal([]byte(r.stderr), &got) != nil {
		t.Fatalf("--changes --format json: %s", r)
	}
	want := []changeOut{
		{Path: "/etc/moat-e2e-do", Kind: "created", Type: "file", Size: 2, Mode: 0o644},
		{Path: tree + "/edit", Kind: "modified", Type: "file", Size: 9, OldSize: 3, Mode: 0o644},
		{Path: tree + "/gone", Kind: "deleted", Type: "dir", Size: 4096},
		{Path: tree + "/link", Kind: "modified", Type: "symlink", Size: 4, OldSize: 6, Mode: 0o777, Target: "edit"},
		{Path: tree + "/made", Kind: "created", Type: "dir", Mode: 0o755},
		{Path: tree + "/made/deep", Kind: "created", Type: "dir", Mode: 0o755},
		{Path: tree + "/made/deep/file", Kind: "created", Type: "file", Size: 6, Mode: 0o644},
		{Path: tree + "/mode", Kind: "modified", Type: "file", Size: 1, OldSize: 1, Mode: 0o755},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("changes:\n got %+v\nwant %+v", got, want)
	}
	if _, err := os.Stat(filepath.Join(tree, "gone")); err != nil {
		t.Errorf("the sandbox's deletion reached the host: %v", err)
	}
	e.stateEmpty()
}

// --keep-changes then moat apply --onto a copy reproduces the changes
// below the tree there (and nothing of the write outside it).
func TestDoKeepAndApply(t *testing.T) {
	e := newDoEnv(t)
	tree, copyDir, keep := filepath.Join(e.host, "tree"), filepath.Join(e.host, "copy"), filepath.Join(e.host, "kept")
	must(t, os.Mkdir(tree, 0o755))
	must(t, os.Mkdir(copyDir, 0o755))
	changeTree(t, tree)
	changeTree(t, copyDir)
	if r := e.do("--cwd", tree, "--keep-changes", keep, "--", "sh", "-c", changeScript); r.code != 0 {
		t.Fatalf("--keep-changes: %s", r)
	}
	r := e.run(strings.NewReader("n\n"), "apply", "--onto", copyDir, keep)
	if r.code == 0 || !strings.Contains(r.stdout, "apply these 7 changes below "+copyDir) {
		t.Fatalf("apply answered no: %s", r)
	}
	if r := e.run(nil, "apply", "--yes", "--onto", copyDir, keep); r.code != 0 {
		t.Fatalf("apply --yes: %s", r)
	}
	// The copy now is what the sandbox saw.
	check := map[string]string{"edit": "oldnewer\n", "made/deep/file": "fresh\n", "mode": "m"}
	for name, content := range check {
		if data, err := os.ReadFile(filepath.Join(copyDir, name)); err != nil || string(data) != content {
			t.Errorf("%s after apply: %q %v; want %q", name, data, err, content)
		}
	}
	if l, _ := os.Readlink(filepath.Join(copyDir, "link")); l != "edit" {
		t.Errorf("link after apply points to %q, want edit", l)
	}
	if st, err := os.Stat(filepath.Join(copyDir, "mode")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("mode after apply: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(copyDir, "gone")); err == nil {
		t.Errorf("the deleted directory is still there")
	}
	if data, err := os.ReadFile(filepath.Join(tree, "edit")); err != nil || string(data) != "old" {
		t.Errorf("the original tree changed: %q %v", data, err)
	}
	e.stateEmpty()
}

// moat apply never follows a symlink out of the root, and refuses paths
// outside it.
func TestDoApplyRefuses(t *testing.T) {
	e := newDoEnv(t)
	tree, keep, outside := filepath.Join(e.host, "tree"), filepath.Join(e.host, "kept"), filepath.Join(e.host, "outside")
	must(t, os.Mkdir(tree, 0o755))
	must(t, os.Mkdir(outside, 0o755))
	if r := e.do("--cwd", tree, "--keep-changes", keep, "--", "sh", "-c", "mkdir -p sub && echo data > sub/file"); r.code != 0 {
		t.Fatalf("--keep-changes: %s", r)
	}
	// A symlink planted where the change set makes a directory.
	must(t, os.Symlink(outside, filepath.Join(tree, "sub")))
	r := e.run(nil, "apply", "--yes", keep)
	if _, err := os.Stat(filepath.Join(outside, "file")); err == nil {
		t.Fatalf("apply followed a symlink out of the root: %s", r)
	}
	if r.code == 0 {
		t.Errorf("apply over a planted symlink succeeded: %s", r)
	}
	// A manifest edited to name a path outside its root.
	mf := filepath.Join(keep, "manifest.json")
	data, err := os.ReadFile(mf)
	must(t, err)
	must(t, os.WriteFile(mf, []byte(strings.ReplaceAll(string(data), tree+"/sub/file", outside+"/file")), 0o600))
	r = e.run(nil, "apply", "--yes", keep)
	if r.code != 125 || !strings.Contains(r.stderr, "outside the change set's roots") {
		t.Errorf("apply of a path outside the root: %s", r)
	}
	if _, err := os.Stat(filepath.Join(outside, "file")); err == nil {
		t.Errorf("apply wrote outside the root")
	}
}

// The default seccomp profile denies nested namespaces, io_uring, bpf,
// ptrace, the key ring, userfaultfd, perf_event_open, and the TIOCSTI and
// TIOCLINUX ioctls (also with high bits set: the kernel reads 32).
func TestDoSeccomp(t *testing.T) {
	e := newDoEnv(t)
	calls := [][]string{
		{"io_uring_setup", "1", "0"}, {"bpf", "0", "0", "0"}, {"ptrace", "16", "1"}, {"keyctl", "0"},
		{"add_key", "0"}, {"userfaultfd", "0"}, {"perf_event_open", "0", "0", "0", "0", "0"}, {"setns", "0", "0"},
		{"unshare", "0x10000000"}, {"kexec_load", "0", "0", "0", "0"}, {"init_module", "0", "0", "0"},
		{"mount", "0", "0", "0", "0", "0"},
		{"16", "0", "0x5412", "@buf"}, {"16", "0", "0x100005412", "@buf"}, {"16", "0", "0x541c", "@buf"},
	}
	var script []string
	for _, c := range calls {
		script = append(script, probeBin+" syscall "+strings.Join(c, " "))
	}
	script = append(script, probeBin+" syscall 16 0 0x5401 @buf") // TCGETS: allowed
	r := e.do("--", "sh", "-c", strings.Join(script, "; "))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != len(calls)+1 {
		t.Fatalf("probe syscalls: %s", r)
	}
	for i, c := range calls {
		var res struct{ Name string }
		decodeJSON(t, lines[i], &res)
		if res.Name != "EPERM" && res.Name != "EACCES" {
			t.Errorf("%v: %s; want it denied", c, lines[i])
		}
	}
	var tcgets struct{ Name string }
	decodeJSON(t, lines[len(calls)], &tcgets)
	if tcgets.Name != "ENOTTY" {
		t.Errorf("TCGETS on a pipe: %s; want ENOTTY (allowed, then refused by the kernel)", lines[len(calls)])
	}
	// --seccomp=none lifts it (the sandbox's other walls stay).
	r = e.do("--seccomp=none", "--", probeBin, "syscall", "16", "0", "0x5412", "@buf")
	if !strings.Contains(r.stdout, "ENOTTY") {
		t.Errorf("--seccomp=none: TIOCSTI on a pipe: %s", r)
	}
}

// More attacks from inside: a hard link from a --rw tree to a hidden file,
// the session bus socket under /run/user, the state root and its
// controller sockets, a storm of FUSE requests at the gofer.
func TestDoAttacksMore(t *testing.T) {
	e := newDoEnv(t)
	rw := filepath.Join(e.host, "rw")
	must(t, os.Mkdir(rw, 0o777))
	home := filepath.Join(e.host, "home")
	must(t, os.MkdirAll(filepath.Join(home, ".ssh"), 0o700))
	secret := filepath.Join(home, ".ssh", "id_ed25519")
	must(t, os.WriteFile(secret, []byte("PRIVATE"), 0o600))
	must(t, os.WriteFile(filepath.Join(home, ".netrc"), []byte("password"), 0o600))
	// The state root of this test, outside /tmp, with a container's
	// controller socket in it.
	state := filepath.Join(e.host, "state")
	saved := e.root
	e.root = state
	defer func() { e.root = saved }()
	must(t, os.MkdirAll(filepath.Join(state, "other"), 0o700))
	ln, err := net.Listen("unix", filepath.Join(state, "other", "ctl.sock"))
	must(t, err)
	defer ln.Close()
	script := fmt.Sprintf(`ln %[1]s %[2]s/l1 2>/dev/null; ln %[3]s/.netrc %[2]s/l2 2>/dev/null
ls -A %[4]s | wc -l; ls -A /run/user 2>/dev/null | while read d; do ls -A /run/user/$d; done | wc -l
cat %[2]s/l1 %[2]s/l2 2>/dev/null; echo end`, secret, rw, home, state)
	r := e.runEnv([]string{"HOME=" + home}, "do", "--rw", rw, "--", "sh", "-c", script)
	if r.code != 0 || r.stdout != "0\n0\nend\n" {
		t.Errorf("hidden files linked into --rw, or state, or /run/user sockets visible: %s", r)
	}
	for _, l := range []string{"l1", "l2"} {
		if st, err := os.Stat(filepath.Join(rw, l)); err == nil && st.Size() > 0 {
			t.Errorf("a hard link to a hidden file reached the --rw tree: %s", l)
		}
	}
	// A storm of lookups, reads and directory listings from many
	// processes: the sandbox ends on its own, and another one still runs.
	storm := "for i in 1 2 3 4 5 6 7 8; do find /usr/lib /usr/share -xdev -type f -size -2k 2>/dev/null | head -3000 | xargs cat >/dev/null 2>&1 & done; wait; echo survived"
	done := make(chan result, 1)
	go func() { done <- e.run(nil, "do", "--", "sh", "-c", storm) }()
	if r := e.run(nil, "do", "--", "true"); r.code != 0 {
		t.Errorf("a sandbox beside the storm: %s", r)
	}
	if r := <-done; r.code != 0 || r.stdout != "survived\n" {
		t.Errorf("FUSE storm: %s", r)
	}
	ents, _ := os.ReadDir(state)
	if len(ents) != 1 {
		t.Errorf("state root after the storm: %v", ents)
	}
}

// The reaper runs from moat's own binary, bound read-only into the sandbox
// (CVE-2019-5736's target): the command, as the caller or as --root, can
// neither write it there or through /proc/1/exe nor remount it writable,
// and the binary on the host (the caller's own file here) is unchanged.
func TestDoReaperBinaryReadOnly(t *testing.T) {
	e := newDoEnv(t)
	bin := filepath.Join(e.host, "bin")
	must(t, os.Mkdir(bin, 0o755))
	exe := filepath.Join(bin, "moat")
	orig, err := os.ReadFile(moatBin)
	must(t, err)
	must(t, os.WriteFile(exe, orig, 0o755))
	// (A write fails with ETXTBSY while the reaper runs; the mount's own
	// flag is read from mountinfo.)
	script := `for f in /dev/.moat-do-init /proc/1/exe; do { echo x >> $f; } 2>/dev/null && echo wrote $f; done
mount -o remount,bind,rw /dev/.moat-do-init 2>/dev/null && echo remounted
{ echo x >> /dev/.moat-do-init; } 2>/dev/null && echo wrote after remount
awk '$5 == "/dev/.moat-do-init" { split($6, o, ","); print o[1] }' /proc/self/mountinfo; echo end`
	for _, root := range []bool{false, true} {
		args := append(append([]string{"--root", e.root}, e.globals...), "do")
		if root {
			args = append(args, "--root")
		}
		args = append(args, "--", "sh", "-c", script)
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), e.environ...)
		out, err := cmd.Output()
		if err != nil || string(out) != "ro\nend\n" {
			t.Errorf("moat do (--root %v): the reaper's binary was written or remounted: %v %q", root, err, out)
		}
		if now, _ := os.ReadFile(exe); !bytes.Equal(now, orig) {
			t.Fatalf("moat do (--root %v): the host's moat binary changed", root)
		}
	}
	e.stateEmpty()
}

// The command runs as the caller's uid and gid inside (--root: as 0), and
// as the caller outside: a file it creates in a --rw tree is the caller's.
func TestDoIdentity(t *testing.T) {
	e := newDoEnv(t)
	rw := filepath.Join(e.host, "rw")
	must(t, os.Mkdir(rw, 0o755))
	var id struct{ UID, GID, EUID int }
	for _, c := range []struct {
		flags    []string
		uid, gid int
	}{{nil, os.Getuid(), os.Getgid()}, {[]string{"--root"}, 0, 0}} {
		args := append(append([]string{"--rw", rw}, c.flags...), "--", probeBin, "id")
		r := e.do(args...)
		if r.code != 0 {
			t.Fatalf("probe id: %s", r)
		}
		decodeJSON(t, r.stdout, &id)
		if id.UID != c.uid || id.EUID != c.uid || id.GID != c.gid {
			t.Errorf("moat do %v: ids %+v; want uid %d gid %d", c.flags, id, c.uid, c.gid)
		}
	}
	if r := e.do("--rw", rw, "--", probeBin, "write", filepath.Join(rw, "f"), "x"); r.code != 0 {
		t.Fatalf("write in --rw: %s", r)
	}
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(rw, "f"), &st))
	if int(st.Uid) != os.Getuid() {
		t.Errorf("a file made in --rw is owned by %d, want the caller %d", st.Uid, os.Getuid())
	}
}

// --seccomp-default gives a container whose spec has no profile moat do's;
// a spec's own profile stays.
func TestSeccompDefaultFlag(t *testing.T) {
	e := newEnv(t)
	var st struct{ Seccomp int }
	e.runJSON(&st, []string{"status"})
	if st.Seccomp != 0 {
		t.Fatalf("a spec without a profile runs filtered: %+v", st)
	}
	e.globals = append(e.globals, "--seccomp-default")
	e.runJSON(&st, []string{"status"})
	if st.Seccomp != 2 {
		t.Fatalf("--seccomp-default: not filtered: %+v", st)
	}
	var res struct{ Name string }
	e.runJSON(&res, []string{"syscall", "unshare", "0x10000000"})
	if res.Name != "EPERM" {
		t.Errorf("--seccomp-default: unshare(CLONE_NEWUSER): %+v", res)
	}
}

// ^C (SIGINT) at any moment of the start-up ends the sandbox with 130 and
// leaves no state: while the sandbox is made, moat do kills it; once the
// command runs, the command gets the signal. (Before moat do has set up
// its handler, SIGINT kills it, as it does any program: nothing exists
// yet then.)
func TestDoInterruptDuringStartup(t *testing.T) {
	e := newDoEnv(t)
	for _, d := range []time.Duration{2 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 80 * time.Millisecond, 500 * time.Millisecond} {
		cmd := moatCmd(e.env, nil, "do", "--ro", filepath.Dir(probeBin), "--", probeBin, "sleep", "30")
		p := startBg(e.env, cmd)
		time.Sleep(d)
		must(t, cmd.Process.Signal(unix.SIGINT))
		r := p.wait()
		killed := r.code == -1 && cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() == unix.SIGINT
		if r.code != 130 && !killed {
			t.Errorf("SIGINT after %s: exit %d; want 130 (%s)", d, r.code, r)
		}
		e.stateEmpty()
	}
}
