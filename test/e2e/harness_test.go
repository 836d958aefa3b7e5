// Package e2e tests the built moat binary end to end: real namespaces, real
// mounts, real cgroups, with the static probe (test/probe) as the container
// process. It needs root (the rootless tiers run the same tests as an
// unprivileged user; see README).
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	moatBin  string // the moat binary under test
	probeBin string // the static probe binary
	baseDir  string // everything a test creates lives below here
	idSeq    atomic.Int64
)

// idPrefix marks every container of this suite, for the leak check.
const idPrefix = "moate2e-"

// runPrefix marks the containers of this run only (IDs are
// idPrefix<pid>-<n>).
func runPrefix() string { return fmt.Sprintf("%s%d-", idPrefix, os.Getpid()) }

// cmdTimeout bounds every moat invocation: nothing may hang.
const cmdTimeout = 90 * time.Second

// result is one moat invocation's outcome.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// env is one test's private moat state root.
type env struct {
	t    *testing.T
	root string
	dir  string
	// globals are extra global flags for every invocation.
	globals []string
	// environ is added to moat's environment.
	environ []string
}

// fileAccess is the tier's --file-access (MOAT_E2E_FILE_ACCESS): the
// suite runs once with the gofer (the default) and once with direct.
var fileAccess = func() string {
	if v := os.Getenv("MOAT_E2E_FILE_ACCESS"); v != "" {
		return v
	}
	return "gofer"
}()

func newEnv(t *testing.T) *env {
	t.Helper()
	dir, err := os.MkdirTemp(baseDir, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, root: filepath.Join(dir, "state"), globals: []string{"--file-access=" + fileAccess}}
	t.Cleanup(e.cleanup)
	return e
}

// in is the env for a subtest of the test that made it: same state root,
// failures reported on t.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// cleanup force-deletes whatever a test left and checks the root is empty.
func (e *env) cleanup() {
	out := e.run(nil, "list", "-q")
	for _, id := range strings.Fields(out.stdout) {
		if r := e.run(nil, "delete", "--force", id); r.code != 0 {
			e.t.Errorf("cleanup: delete --force %s: %s", id, r)
		}
	}
	if ents, _ := os.ReadDir(e.root); len(ents) > 0 {
		e.t.Errorf("state root not empty after cleanup: %v", ents)
	}
}

// id returns a fresh container id.
func (e *env) id() string {
	// The pid keeps ids unique across concurrent test binaries.
	return fmt.Sprintf("%s%d", runPrefix(), idSeq.Add(1))
}

// run invokes moat with the env's root; stdin may be nil.
func (e *env) run(stdin io.Reader, args ...string) result {
	return e.runCtx(context.Background(), stdin, args...)
}

func (e *env) runCtx(ctx context.Context, stdin io.Reader, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	full := append([]string{"--root", e.root}, e.globals...)
	cmd := exec.CommandContext(ctx, moatBin, append(full, args...)...)
	cmd.Stdin = stdin
	if len(e.environ) > 0 {
		cmd.Env = append(os.Environ(), e.environ...)
	}
	// Files, not pipes: a detached container keeps writing to the stdio of
	// the moat command that created it, and a closed pipe would kill it
	// with SIGPIPE.
	outF, errF := tempOut(e.t), tempOut(e.t)
	defer outF.Close()
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out, errb := readBack(outF), readBack(errF)
	code := 0
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	} else if err != nil {
		code = -1
	}
	if ctx.Err() != nil {
		e.t.Errorf("moat %v timed out after %s", args, cmdTimeout)
	}
	return result{stdout: out, stderr: errb, code: code}
}

// tempOut is an unlinked temporary file for a command's output.
func tempOut(t *testing.T) *os.File {
	f, err := os.CreateTemp("", "moat-e2e-out-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(f.Name())
	return f
}

func readBack(f *os.File) string {
	var b bytes.Buffer
	f.Seek(0, 0)
	io.Copy(&b, f)
	return b.String()
}

// moat runs moat and fails the test unless it exits 0.
func (e *env) moat(args ...string) string {
	e.t.Helper()
	r := e.run(nil, args...)
	if r.code != 0 {
		e.t.Fatalf("moat %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// fails runs moat, expects a non-zero exit and an error mentioning want.
func (e *env) fails(want string, args ...string) result {
	e.t.Helper()
	r := e.run(nil, args...)
	if r.code == 0 {
		e.t.Fatalf("moat %s succeeded; want an error about %q\n%s", strings.Join(args, " "), want, r)
	}
	if !strings.Contains(r.stderr, want) {
		e.t.Fatalf("moat %s: error does not mention %q\n%s", strings.Join(args, " "), want, r)
	}
	return r
}

// bundle is an OCI bundle whose root holds the probe.
type bundle struct {
	dir  string
	spec *specs.Spec
}

// probeCommands get a symlink in the rootfs's /bin.
var probeCommands = []string{"true", "false", "sh", "echo", "cat", "sleep", "id", "env"}

// newBundle writes a bundle running `probe ARGS...`; mutate edits the spec.
func (e *env) newBundle(args []string, mutate ...func(*specs.Spec)) *bundle {
	e.t.Helper()
	dir, err := os.MkdirTemp(e.dir, "bundle-")
	if err != nil {
		e.t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "proc", "dev", "sys"} {
		must(e.t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	must(e.t, copyFile(probeBin, filepath.Join(rootfs, "bin/probe"), 0o755))
	for _, c := range probeCommands {
		must(e.t, os.Symlink("probe", filepath.Join(rootfs, "bin", c)))
	}
	must(e.t, os.WriteFile(filepath.Join(rootfs, "etc/passwd"),
		[]byte("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"), 0o644))
	s := baseSpec(append([]string{"/bin/probe"}, args...))
	for _, m := range mutate {
		m(s)
	}
	b := &bundle{dir: dir, spec: s}
	b.save(e.t)
	return b
}

func (b *bundle) save(t *testing.T) {
	data, err := json.MarshalIndent(b.spec, "", " ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(b.dir, "config.json"), data, 0o644))
}

func (b *bundle) rootfs() string { return filepath.Join(b.dir, "rootfs") }

// baseSpec is `moat spec`'s default, non-interactive, running args.
func baseSpec(args []string) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "moat-test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// runProbe runs a container with the given probe args and returns stdout.
func (e *env) runProbe(args []string, mutate ...func(*specs.Spec)) string {
	e.t.Helper()
	b := e.newBundle(args, mutate...)
	return e.moat("run", "--bundle", b.dir, e.id())
}

// runJSON runs a probe command and decodes its JSON line.
func (e *env) runJSON(v any, args []string, mutate ...func(*specs.Spec)) {
	e.t.Helper()
	out := e.runProbe(args, mutate...)
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), v); err != nil {
		e.t.Fatalf("probe %v printed %q: %v", args, out, err)
	}
}

// state returns a container's OCI state.
func (e *env) state(id string) map[string]any {
	e.t.Helper()
	var st map[string]any
	out := e.moat("state", id)
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("state %s: %q: %v", id, out, err)
	}
	return st
}

func (e *env) status(id string) string {
	e.t.Helper()
	s, _ := e.state(id)["status"].(string)
	return s
}

// waitStatus polls until the container reaches want.
func (e *env) waitStatus(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := e.status(id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s is %s, want %s", id, st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// specsSpec shortens mutator signatures.
type specsSpec = specs.Spec

// bindMount adds a bind mount of a host directory with "ro" or "rw".
func bindMount(s *specs.Spec, src, dst, mode string) {
	s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src,
		Options: []string{"rbind", mode}})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

// waitFile waits until path exists.
// waitOutput waits (bounded) until out() holds want n times: a signal is
// sent only once the previous one was handled, since standard signals
// pending at once merge into one.
func waitOutput(t *testing.T, out func() string, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(out(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("output never held %q %d times: %q", want, n, out())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
