package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPreserveFdsRun(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"fds"})
	files := tempFiles(e, "keep-a", "keep-b", "keep-c")
	r := runMoatWith(e, files, nil, "run", "--preserve-fds", "2", "--bundle", b.dir, e.id())
	if r.code != 0 {
		t.Fatalf("run --preserve-fds 2: %s", r)
	}
	// The third file is open in moat too, but not preserved.
	checkPreserved(t, fdsOf(t, r.stdout), "keep-a", "keep-b")
	r = runMoatWith(e, files, nil, "run", "--bundle", b.dir, e.id())
	checkPreserved(t, fdsOf(t, r.stdout))
	e.fails("--preserve-fds", "run", "--preserve-fds", "-1", "--bundle", b.dir, e.id())
}

func TestPreserveFdsCreateStart(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"fds"})
	id := e.id()
	files := tempFiles(e, "created-a")
	p := startMoat(e, files, "create", "--preserve-fds", "1", "--bundle", b.dir, id)
	if r := p.wait(); r.code != 0 {
		t.Fatalf("create --preserve-fds 1: %s", r)
	}
	e.moat("start", id)
	e.waitStatus(id, "stopped")
	checkPreserved(t, fdsOf(t, p.out()), "created-a")
	e.moat("delete", id)
}

type listenOut struct {
	ListenFDs string `json:"LISTEN_FDS"`
	ListenPID string `json:"LISTEN_PID"`
	Pid       int    `json:"pid"`
	Fds       []int  `json:"fds"`
}

// listeners opens n listening unix sockets.
func listeners(e *env, n int) []*os.File {
	var out []*os.File
	for i := 0; i < n; i++ {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(e.dir, fmt.Sprintf("sa-%d.sock", i)), Net: "unix"})
		must(e.t, err)
		f, err := ln.File()
		must(e.t, err)
		ln.Close()
		e.t.Cleanup(func() { f.Close() })
		out = append(out, f)
	}
	return out
}

// environWithout is the test's environment minus the given variables.
func environWithout(names ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(kv, n+"=") }) {
			out = append(out, kv)
		}
	}
	return out
}

// TestListenFds: socket activation. moat takes LISTEN_FDS descriptors when
// LISTEN_PID is unset or names moat itself (create.go extraFiles); exec.Cmd
// cannot know moat's pid in advance, so the unset form is used, and a
// LISTEN_PID naming another process must be ignored. The container gets the
// sockets at 3.. with LISTEN_FDS=N and LISTEN_PID = its own pid, as runc
// does for systemd-activated containers.
func TestListenFds(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"listenfds"})
	socks := listeners(e, 2)
	base := environWithout("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
	r := runMoatWith(e, socks, append(base, "LISTEN_FDS=2"), "run", "--bundle", b.dir, e.id())
	if r.code != 0 {
		t.Fatalf("run with LISTEN_FDS=2: %s", r)
	}
	var got listenOut
	decodeJSON(t, r.stdout, &got)
	if !slices.Equal(got.Fds, []int{3, 4}) {
		t.Errorf("container fds above stdio %v, want [3 4]", got.Fds)
	}
	if got.ListenFDs != "2" || got.ListenPID != strconv.Itoa(got.Pid) {
		t.Errorf("container env LISTEN_FDS=%q LISTEN_PID=%q (its pid %d); want 2 and its own pid",
			got.ListenFDs, got.ListenPID, got.Pid)
	}
	r = runMoatWith(e, append(tempFiles(e, "pre"), socks...), append(base, "LISTEN_FDS=2"),
		"run", "--preserve-fds", "1", "--bundle", b.dir, e.id())
	decodeJSON(t, r.stdout, &got)
	if !slices.Equal(got.Fds, []int{3, 4, 5}) {
		t.Errorf("--preserve-fds 1 + LISTEN_FDS=2: fds %v, want [3 4 5]", got.Fds)
	}
	r = runMoatWith(e, socks, append(base, "LISTEN_FDS=2", "LISTEN_PID=1"), "run", "--bundle", b.dir, e.id())
	decodeJSON(t, r.stdout, &got)
	if len(got.Fds) != 0 || got.ListenFDs != "" {
		t.Errorf("LISTEN_PID of another process: container got fds %v LISTEN_FDS=%q, want none", got.Fds, got.ListenFDs)
	}
}

func TestLogFormats(t *testing.T) {
	e := newEnv(t)
	jsonLog := filepath.Join(e.dir, "log.json")
	r := e.run(nil, "--log", jsonLog, "--log-format", "json", "state", "nosuch")
	if r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("state of a missing container: %s", r)
	}
	data, err := os.ReadFile(jsonLog)
	must(t, err)
	var line map[string]any
	if err := json.Unmarshal([]byte(lastLine(string(data))), &line); err != nil {
		t.Fatalf("--log-format json wrote %q: %v", data, err)
	}
	msg, _ := line["msg"].(string)
	if line["level"] != "error" || !strings.Contains(msg, "does not exist") || line["time"] == nil {
		t.Errorf("json log line %v: want level error, msg and time", line)
	}
	textLog := filepath.Join(e.dir, "log.txt")
	e.run(nil, "--log", textLog, "--log-format", "text", "kill", "nosuch", "KILL")
	data, err = os.ReadFile(textLog)
	must(t, err)
	text := lastLine(string(data))
	if !strings.Contains(text, "level=error") || !strings.Contains(text, "msg=") || !strings.Contains(text, "time=") {
		t.Errorf("text log line %q", text)
	}
	e.fails("--log-format", "--log-format", "yaml", "list")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestFeatures(t *testing.T) {
	e := newEnv(t)
	var f struct {
		OCIVersionMin, OCIVersionMax string
		Hooks                        []string
		Linux                        struct {
			Namespaces []string
			Seccomp    struct {
				Enabled   *bool
				Actions   []string
				Operators []string
				Archs     []string
			}
		}
	}
	out := e.moat("features")
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("features printed invalid JSON: %v\n%s", err, out)
	}
	if f.OCIVersionMax != specs.Version || f.OCIVersionMin == "" {
		t.Errorf("ociVersionMin %q ociVersionMax %q", f.OCIVersionMin, f.OCIVersionMax)
	}
	hooks := []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}
	if len(f.Hooks) != 6 || !containsAll(f.Hooks, hooks) {
		t.Errorf("hooks %v, want the six OCI hooks", f.Hooks)
	}
	if !containsAll(f.Linux.Namespaces, []string{"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}) {
		t.Errorf("linux.namespaces %v", f.Linux.Namespaces)
	}
	sc := f.Linux.Seccomp
	if sc.Enabled == nil || !*sc.Enabled ||
		!containsAll(sc.Actions, []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"}) ||
		!containsAll(sc.Operators, []string{"SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"}) ||
		!containsAll(sc.Archs, []string{"SCMP_ARCH_X86_64"}) {
		t.Errorf("linux.seccomp %+v", sc)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func TestSpecCommand(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle(nil)
	config := filepath.Join(b.dir, "config.json")
	must(t, os.Remove(config))
	e.moat("spec", "--bundle", b.dir)
	e.fails("already exists", "spec", "--bundle", b.dir)
	var s specs.Spec
	data, err := os.ReadFile(config)
	must(t, err)
	must(t, json.Unmarshal(data, &s))
	if s.Process.Terminal || !s.Root.Readonly || s.Root.Path != "rootfs" || s.Version != specs.Version {
		t.Errorf("default spec: terminal %v readonly %v root %q version %q; want no terminal, a read-only rootfs",
			s.Process.Terminal, s.Root.Readonly, s.Root.Path, s.Version)
	}
	s.Process.Args = []string{"/bin/probe", "echo", "from-spec"}
	b.spec = &s
	b.save(t)
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "from-spec\n" {
		t.Errorf("run of the spec's config printed %q", out)
	}
	t.Run("rootless", func(t *testing.T) {
		e := e.in(t)
		b := e.newBundle(nil)
		config := filepath.Join(b.dir, "config.json")
		must(t, os.Remove(config))
		e.moat("spec", "--rootless", "--bundle", b.dir)
		var s specs.Spec
		data, err := os.ReadFile(config)
		must(t, err)
		must(t, json.Unmarshal(data, &s))
		// The caller is root; its subordinate range (when it has one in
		// both files) is 1..N, as a spec without a user namespace gets.
		uids, gids := subIDs(t, "/etc/subuid"), subIDs(t, "/etc/subgid")
		own := func(id int, sub []uint32) []specs.LinuxIDMapping {
			m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(id), Size: 1}}
			if uids != nil && gids != nil {
				m = append(m, specs.LinuxIDMapping{ContainerID: 1, HostID: sub[0], Size: sub[1]})
			}
			return m
		}
		if !slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.UserNamespace }) ||
			!slices.Equal(s.Linux.UIDMappings, own(os.Getuid(), uids)) || !slices.Equal(s.Linux.GIDMappings, own(os.Getgid(), gids)) {
			t.Errorf("spec --rootless: namespaces %v uidMappings %v gidMappings %v; want a user namespace mapping the caller (subuid %v subgid %v)",
				s.Linux.Namespaces, s.Linux.UIDMappings, s.Linux.GIDMappings, uids, gids)
		}
		for _, m := range s.Mounts {
			if m.Type == "devpts" && slices.ContainsFunc(m.Options, func(o string) bool { return strings.HasPrefix(o, "gid=") }) {
				t.Errorf("spec --rootless: devpts options %v name a gid the map lacks", m.Options)
			}
		}
		if s.Linux.Resources != nil {
			t.Errorf("spec --rootless has resources %+v", s.Linux.Resources)
		}
		s.Process.Args = []string{"/bin/probe", "echo", "from-rootless-spec"}
		b.spec = &s
		b.save(t)
		if out := e.moat("run", "--bundle", b.dir, e.id()); out != "from-rootless-spec\n" {
			t.Errorf("run of the rootless spec's config printed %q", out)
		}
	})
	dir := t.TempDir()
	cmd := exec.Command(moatBin, "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("spec in the current directory: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		t.Errorf("spec without --bundle: %v", err)
	}
}

func TestStateFields(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) {
		s.Annotations = map[string]string{"org.example/key": "value"}
	})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	st := e.state(id)
	for _, k := range []string{"ociVersion", "id", "status", "pid", "bundle"} {
		if _, ok := st[k]; !ok {
			t.Errorf("state lacks %q: %v", k, st)
		}
	}
	pid, _ := st["pid"].(float64)
	if st["ociVersion"] != specs.Version || st["id"] != id || st["status"] != "created" ||
		pid <= 0 || st["bundle"] != b.dir {
		t.Errorf("state after create: %v", st)
	}
	if ann, _ := st["annotations"].(map[string]any); ann["org.example/key"] != "value" {
		t.Errorf("state annotations: %v", st["annotations"])
	}
	e.moat("start", id)
	if st := e.state(id); st["status"] != "running" || st["pid"] != pid {
		t.Errorf("state after start: %v", st)
	}
	e.moat("kill", id, "KILL")
	e.waitStatus(id, "stopped")
	if p, ok := e.state(id)["pid"]; ok && p != float64(0) {
		t.Errorf("stopped container still reports pid %v", p)
	}
	e.moat("delete", id)
}

func TestListFormats(t *testing.T) {
	e := newEnv(t)
	if out := strings.TrimSpace(e.moat("list", "--format", "json")); out != "null" && out != "[]" {
		t.Errorf("list --format json of no containers: %q", out)
	}
	if q := e.moat("list", "-q"); q != "" {
		t.Errorf("list -q of no containers: %q", q)
	}
	idA, bA := holding(e)
	bB := e.newBundle([]string{"true"})
	idB := e.id()
	e.moat("create", "--bundle", bB.dir, idB)
	ids := []string{idA, idB}
	slices.Sort(ids)
	if q := e.moat("list", "--quiet"); q != strings.Join(ids, "\n")+"\n" {
		t.Errorf("list --quiet: %q, want %q", q, ids)
	}
	var list []map[string]any
	must(t, json.Unmarshal([]byte(e.moat("list", "-f", "json")), &list))
	want := map[string]string{idA: "running", idB: "created"}
	for _, c := range list {
		id, _ := c["id"].(string)
		if c["status"] != want[id] || c["pid"] == nil || c["bundle"] == nil {
			t.Errorf("list json entry %v", c)
		}
		delete(want, id)
	}
	if len(want) != 0 {
		t.Errorf("list json lacks %v: %v", want, list)
	}
	checkTable(t, e.moat("list"), map[string][]string{idA: {"running", bA.dir}, idB: {"created", bB.dir}})
	e.fails("--format", "list", "--format", "yaml")
}

func checkTable(t *testing.T, table string, rows map[string][]string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if h := strings.Fields(lines[0]); !slices.Equal(h, []string{"ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"}) {
		t.Errorf("list header %q", lines[0])
	}
	if len(lines) != 1+len(rows) {
		t.Errorf("list table has %d rows, want %d:\n%s", len(lines)-1, len(rows), table)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		want, ok := rows[f[0]]
		if !ok || len(f) < 5 || f[2] != want[0] || f[3] != want[1] {
			t.Errorf("list row %q", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, f[4]); err != nil {
			t.Errorf("list row %q: created: %v", l, err)
		}
	}
}

// defaultRoot is the state root moat uses without --root in this tier,
// given the value of XDG_RUNTIME_DIR.
func defaultRoot(xdg string) string {
	switch {
	case !rootless:
		return "/run/moat"
	case xdg != "":
		return filepath.Join(xdg, "moat")
	}
	return fmt.Sprintf("/tmp/moat-%d", os.Getuid())
}

// removeIfCreated removes a rootless default root at the end of the test
// unless it exists now (/run/moat is left alone).
func removeIfCreated(t *testing.T, dir string) {
	if _, err := os.Lstat(dir); rootless && os.IsNotExist(err) {
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
				t.Errorf("clean up %s: %v", dir, err)
			}
		})
	}
}

func TestDefaultRoot(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"})
	id := e.id()
	root := defaultRoot(os.Getenv("XDG_RUNTIME_DIR"))
	removeIfCreated(t, root)
	// Output to files, not pipes: the detached container keeps its stdio.
	bare := func(args ...string) (string, error) {
		r := startBg(e, exec.Command(moatBin, append(append([]string{}, e.globals...), args...)...)).wait()
		if r.code != 0 {
			return r.stdout + r.stderr, fmt.Errorf("exit %d", r.code)
		}
		return r.stdout, nil
	}
	t.Cleanup(func() { bare("delete", "--force", id) })
	if out, err := bare("run", "-d", "--bundle", b.dir, id); err != nil {
		t.Fatalf("run without --root: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, id, "state.json")); err != nil {
		t.Errorf("default root: %v", err)
	}
	if out, err := bare("state", id); err != nil || !strings.Contains(out, `"running"`) {
		t.Errorf("state without --root: %v %s", err, out)
	}
	if out, _ := bare("list", "-q"); !slices.Contains(strings.Fields(out), id) {
		t.Errorf("list without --root: %q lacks %s", out, id)
	}
	if q := e.moat("list", "-q"); q != "" {
		t.Errorf("the container shows up under --root %s too: %q", e.root, q)
	}
	if out, err := bare("delete", "--force", id); err != nil {
		t.Errorf("delete without --root: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(root, id)); !os.IsNotExist(err) {
		t.Errorf("%s/%s after delete: %v", root, id, err)
	}
}
