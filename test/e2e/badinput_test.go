package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// badSpec is a config.json mistake and what the error must mention.
type badSpec struct {
	name   string
	mutate func(*specsSpec)
	want   string
}

func badSpecs() []badSpec {
	ns := func(t specs.LinuxNamespaceType, path string) func(*specsSpec) {
		return func(s *specsSpec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
		}
	}
	args := func(a ...string) func(*specsSpec) { return func(s *specsSpec) { s.Process.Args = a } }
	rlimit := func(typ string, soft, hard uint64) func(*specsSpec) {
		return func(s *specsSpec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: typ, Soft: soft, Hard: hard}}
		}
	}
	seccomp := func(sc *specs.LinuxSeccomp) func(*specsSpec) { return func(s *specsSpec) { s.Linux.Seccomp = sc } }
	return []badSpec{
		{"relative mount destination", func(s *specsSpec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "data", Type: "tmpfs", Source: "tmpfs"})
		}, "not an absolute path"},
		{"unknown namespace", ns("bogus", ""), `unknown namespace type "bogus"`},
		{"duplicate namespace", ns(specs.PIDNamespace, ""), "given twice"},
		{"join user namespace", ns(specs.UserNamespace, "/proc/self/ns/user"), "user namespace"},
		{"unknown mount type", func(s *specsSpec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "nosuchfs", Source: "none"})
		}, `unknown mount type "nosuchfs"`},
		{"unknown capability", func(s *specsSpec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_NOPE")
		}, `unknown capability "CAP_NOPE"`},
		{"unknown rlimit", rlimit("RLIMIT_NOPE", 1, 1), `unknown rlimit type "RLIMIT_NOPE"`},
		{"soft above hard", rlimit("RLIMIT_NOFILE", 2048, 1024), "exceeds hard limit"},
		{"empty args", args(), "process.args"},
		{"command not in PATH", args("nosuchcmd"), `"nosuchcmd": executable file not found`},
		{"missing program", args("/bin/nosuch"), "/bin/nosuch"},
		{"relative cwd", func(s *specsSpec) { s.Process.Cwd = "tmp" }, "process.cwd"},
		{"relative hook path", func(s *specsSpec) {
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "bin/hook"}}}
		}, "hooks.prestart[0].path"},
		{"bad seccomp action", seccomp(&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}), "SCMP_ACT_NOPE"},
		{"bad seccomp arch", seccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{"SCMP_ARCH_NOPE"}}), "SCMP_ARCH_NOPE"},
		{"bad seccomp operator", seccomp(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: "SCMP_CMP_NOPE"}}}}}), "SCMP_CMP_NOPE"},
		{"host sysctl", func(s *specsSpec) { s.Linux.Sysctl = map[string]string{"kernel.pid_max": "4096"} }, "kernel.pid_max"},
		{"bind source missing", func(s *specsSpec) { bindMount(s, "/nonexistent/src", "/mnt", "ro") }, "/nonexistent/src"},
		{"unknown mount option", func(s *specsSpec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"bogus-opt"}})
		}, "mount tmpfs on /x"},
	}
}

// assertNothingLeft checks that a failed command left no trace of id.
func assertNothingLeft(e *env, id string) {
	e.t.Helper()
	if q := e.moat("list", "-q"); q != "" {
		e.t.Errorf("list -q after a failed create: %q", q)
	}
	if ents, _ := os.ReadDir(e.root); len(ents) > 0 {
		e.t.Errorf("state root has %v after a failed create", ents)
	}
	for _, l := range append(leakedProcesses(), leakedCgroups()...) {
		if strings.Contains(l, id+" ") || strings.HasSuffix(l, id) || strings.Contains(l, id+"/") {
			e.t.Errorf("left behind: %s", l)
		}
	}
}

// failsOneLine runs moat, expects failure with want in a one-line error.
func failsOneLine(e *env, want string, args ...string) {
	e.t.Helper()
	r := e.fails(want, args...)
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 {
		e.t.Errorf("error is %d lines, want one:\n%s", len(lines), r.stderr)
	}
}

func TestBadSpecs(t *testing.T) {
	for _, tc := range badSpecs() {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			b := e.newBundle([]string{"true"}, tc.mutate)
			id := e.id()
			failsOneLine(e, tc.want, "create", "--bundle", b.dir, id)
			assertNothingLeft(e, id)
			failsOneLine(e, tc.want, "run", "--bundle", b.dir, id)
			assertNothingLeft(e, id)
		})
	}
}

// TestBadBundles covers bundles broken on disk rather than in their spec.
func TestBadBundles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b *bundle) error
		want   string
	}{
		{"malformed json", func(b *bundle) error { return writeConfig(b, `{"ociVersion": "1.0.2",, }`) }, "malformed JSON"},
		{"truncated json", func(b *bundle) error { return writeConfig(b, `{"ociVersion": "1.0.2", "process": {`) }, "config.json"},
		{"process is a number", func(b *bundle) error { return writeConfig(b, `{"ociVersion":"1.0.2","process":5}`) }, `"process"`},
		{"args is a string", func(b *bundle) error {
			return writeConfig(b, `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":"x","cwd":"/"}}`)
		}, "args"},
		{"trailing data", func(b *bundle) error { return appendConfig(b, "{}") }, "trailing data"},
		{"missing config.json", func(b *bundle) error { return os.Remove(filepath.Join(b.dir, "config.json")) }, "config.json"},
		{"missing rootfs", func(b *bundle) error { return os.RemoveAll(b.rootfs()) }, "does not exist"},
		{"rootfs is a file", func(b *bundle) error {
			if err := os.RemoveAll(b.rootfs()); err != nil {
				return err
			}
			return os.WriteFile(b.rootfs(), nil, 0o644)
		}, "not a directory"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			b := e.newBundle([]string{"true"})
			must(t, tc.damage(b))
			id := e.id()
			failsOneLine(e, tc.want, "create", "--bundle", b.dir, id)
			assertNothingLeft(e, id)
		})
	}
}

func writeConfig(b *bundle, text string) error {
	return os.WriteFile(filepath.Join(b.dir, "config.json"), []byte(text), 0o644)
}

func appendConfig(b *bundle, text string) error {
	f, err := os.OpenFile(filepath.Join(b.dir, "config.json"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(text)
	return err
}

// TestMissingCwdCreated: a process.cwd missing from the image is created,
// as runc does (Kubernetes workingDir relies on it).
func TestMissingCwdCreated(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"cwd"}, func(s *specsSpec) { s.Process.Cwd = "/work/dir" })
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "/work/dir\n" {
		t.Errorf("cwd %q, want /work/dir", out)
	}
}

// TestRelativePaths: a relative root.path is relative to the bundle, not to
// moat's working directory; a relative --bundle is relative to the latter.
func TestRelativePaths(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"echo", "ok"}, func(s *specsSpec) { s.Root.Path = "./rootfs/../rootfs" })
	cmd := moatCmd(e, nil, "run", "--bundle", filepath.Base(b.dir), e.id())
	cmd.Dir = e.dir
	if r := startBg(e, cmd).wait(); r.code != 0 || r.stdout != "ok\n" {
		t.Errorf("relative root.path and --bundle: %s", r)
	}
	cmd = moatCmd(e, nil, "run", e.id())
	cmd.Dir = b.dir
	if r := startBg(e, cmd).wait(); r.code != 0 || r.stdout != "ok\n" {
		t.Errorf("run without --bundle in the bundle directory: %s", r)
	}
}

func TestBadIDs(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	for _, id := range []string{"", "a/b", "..", ".", "x y", "../escape", strings.Repeat("x", 1100)} {
		failsOneLine(e, "invalid container id", "create", "--bundle", b.dir, id)
		failsOneLine(e, "invalid container id", "state", id)
		assertNothingLeft(e, "moate2e-none")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "escape")); err == nil {
		t.Error("id ../escape created a directory outside the state root")
	}
}

func TestDuplicateID(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	pid := e.state(id)["pid"]
	failsOneLine(e, "already exists", "create", "--bundle", b.dir, id)
	failsOneLine(e, "already exists", "run", "--bundle", b.dir, id)
	if st := e.state(id); st["status"] != "created" || st["pid"] != pid {
		t.Errorf("a duplicate create disturbed the first container: %v", st)
	}
	e.moat("delete", id)
}

func TestBadSignals(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	for _, sig := range []string{"SIGNOPE", "0", "65", "-9", "RTMIN+40", "", "9x"} {
		r := e.run(nil, "kill", id, sig)
		if r.code == 0 || !strings.Contains(r.stderr, "signal") {
			t.Errorf("kill %s %q: %s", id, sig, r)
		}
	}
	if e.status(id) != "running" {
		t.Errorf("bad signals changed the container: %s", e.status(id))
	}
}

// TestWrongState: every operation the container's status forbids fails
// with a message naming the status, and changes nothing.
func TestWrongState(t *testing.T) {
	e := newEnv(t)
	created := e.newBundle([]string{"hold", "600"})
	idC := e.id()
	e.moat("create", "--bundle", created.dir, idC)
	failsOneLine(e, "created", "pause", idC)
	failsOneLine(e, "created", "resume", idC)

	idR, _ := holding(e)
	failsOneLine(e, "cannot start", "start", idR)
	failsOneLine(e, "running", "resume", idR)
	failsOneLine(e, "--force", "delete", idR)
	if e.status(idR) != "running" {
		t.Errorf("after refused operations the container is %s", e.status(idR))
	}

	stopped := e.newBundle([]string{"true"})
	idS := e.id()
	e.moat("run", "--keep", "--bundle", stopped.dir, idS)
	failsOneLine(e, "stopped", "start", idS)
	failsOneLine(e, "stopped", "exec", idS, "probe", "true")
	failsOneLine(e, "stopped", "pause", idS)
	failsOneLine(e, "container not running", "kill", idS, "KILL") // containerd matches these words
	e.moat("delete", idS)

	failsOneLine(e, "does not exist", "kill", idS, "KILL")
	failsOneLine(e, "does not exist", "state", idS)
	failsOneLine(e, "does not exist", "start", idS)
	failsOneLine(e, "does not exist", "delete", idS)
	failsOneLine(e, "does not exist", "exec", idS, "probe", "true")
}
