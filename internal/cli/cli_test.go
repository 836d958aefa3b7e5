package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/moat-sandbox/moat/internal/spec"
)

type result struct {
	code           int
	stdout, stderr string
	// osStderr is what went to the process's real stderr (the default
	// logger's destination) rather than to run's stderr writer.
	osStderr string
}

// moat runs the CLI in-process with the given arguments.
func moat(t *testing.T, args ...string) result {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	captured := make(chan string, 1)
	go func() {
		data, _ := io.ReadAll(r)
		r.Close()
		captured <- string(data)
	}()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"moat"}, args...), &stdout, &stderr)
	os.Stderr = saved
	w.Close()
	return result{code: code, stdout: stdout.String(), stderr: stderr.String(), osStderr: <-captured}
}

func (r result) all() string { return r.stderr + r.osStderr }

func TestVersion(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		r := moat(t, flag)
		if r.code != 0 {
			t.Fatalf("%s: exit %d (%s)", flag, r.code, r.all())
		}
		want := "moat version " + Version + "\ncommit: " + Commit + "\nspec: " + specs.Version + "\n"
		if r.stdout != want {
			t.Errorf("%s printed %q, want %q", flag, r.stdout, want)
		}
		if strings.Count(r.stdout, "\n") != 3 {
			t.Errorf("%s printed %d lines", flag, strings.Count(r.stdout, "\n"))
		}
		if r.all() != "" {
			t.Errorf("%s wrote to stderr: %q", flag, r.all())
		}
	}
}

func TestHelp(t *testing.T) {
	r := moat(t, "--help")
	if r.code != 0 {
		t.Fatalf("--help: exit %d", r.code)
	}
	if !strings.Contains(r.stdout, "Usage: moat") {
		t.Errorf("--help output:\n%s", r.stdout)
	}
	for _, c := range userCommands() {
		if !strings.Contains(r.stdout, "  "+c.Name+" ") {
			t.Errorf("--help does not list %s", c.Name)
		}
	}
	for _, c := range internalCommands() {
		if strings.Contains(r.stdout, "  "+c.Name+" ") {
			t.Errorf("--help lists the internal command %s", c.Name)
		}
	}
	for _, f := range []string{"--root", "--log", "--log-format", "--debug", "--systemd-cgroup", "--rootless"} {
		if !strings.Contains(r.stdout, f+" ") {
			t.Errorf("--help does not list the global flag %s", f)
		}
	}
	// No command at all: usage, and a failure exit code.
	r = moat(t)
	if r.code == 0 || !strings.Contains(r.stdout, "Usage: moat") {
		t.Errorf("no command: exit %d, output %q", r.code, r.stdout)
	}
	r = moat(t, "state", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Usage: moat state") || !strings.Contains(r.stdout, "CONTAINER-ID") {
		t.Errorf("state --help: exit %d, output %q", r.code, r.stdout)
	}
}

func TestUnknownCommand(t *testing.T) {
	r := moat(t, "frobnicate")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestUnknownFlags(t *testing.T) {
	r := moat(t, "--x", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown flag --x") || !strings.Contains(r.stderr, "moat --help") {
		t.Errorf("global: exit %d, stderr %q", r.code, r.stderr)
	}
	r = moat(t, "--root", t.TempDir(), "state", "--x", "id")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown flag --x") || !strings.Contains(r.stderr, "moat state --help") {
		t.Errorf("command: exit %d, stderr %q", r.code, r.stderr)
	}
	r = moat(t, "--log-format", "xml", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "--log-format") {
		t.Errorf("bad --log-format: exit %d, stderr %q", r.code, r.stderr)
	}
	r = moat(t, "--root")
	if r.code != 1 || !strings.Contains(r.stderr, "root") {
		t.Errorf("flag without value: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestHints: a global flag after the command says where it goes; typos of
// commands and flags get the nearest names.
func TestHints(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--network=sandbox", "x"}, "--network is a global flag: it goes before the command (moat --network=sandbox run ...)"},
		{[]string{"state", "--log", "f", "x"}, "--log is a global flag: it goes before the command (moat --log f state ...)"},
		{[]string{"list", "--debug"}, "(moat --debug list ...)"},
		{[]string{"rn", "x"}, `unknown command "rn": did you mean run?`},
		{[]string{"stat", "x"}, `unknown command "stat": did you mean start or state?`},
		{[]string{"--netwrk=sandbox", "run", "x"}, "unknown flag --netwrk: did you mean --network?"},
		{[]string{"run", "--netwrk=sandbox", "x"}, "unknown flag --netwrk: did you mean the global flag --network (it goes before the command)?"},
		{[]string{"run", "--bundel", "b", "x"}, "unknown flag --bundel: did you mean --bundle?"},
		{[]string{"spec", "--rootles"}, "unknown flag --rootles: did you mean --rootless?"},
	} {
		r := moat(t, append([]string{"--root", root}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want one line with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	for _, args := range [][]string{{"frobnicate"}, {"run", "--x", "y"}} {
		if r := moat(t, append([]string{"--root", root}, args...)...); strings.Contains(r.stderr, "did you mean") {
			t.Errorf("%q: a hint for a name near nothing: %q", args, r.stderr)
		}
	}
}

var flagLine = regexp.MustCompile(`^  (?:-\w(?:, --[\w-]+)?|    --[\w-]+) +`)

// TestHelpAligned: a flag's aliases share its line ("-b, --bundle") and the
// help texts start in one column.
func TestHelpAligned(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"spec", "--help"}, {"exec", "--help"}} {
		r := moat(t, args...)
		_, flags, _ := strings.Cut(r.stdout, "lags:\n")
		flags, _, _ = strings.Cut(flags, "\n\n")
		col := -1
		for _, l := range strings.Split(strings.Trim(flags, "\n"), "\n") {
			m := flagLine.FindString(l)
			if m == "" {
				t.Errorf("%q: flag line %q is not \"-s, --long  help\" nor \"    --long  help\"", args, l)
			} else if col < 0 {
				col = len(m)
			} else if len(m) != col {
				t.Errorf("%q: help starts at column %d, not %d, in %q:\n%s", args, len(m), col, l, flags)
			}
		}
		if strings.Contains(flags, "\n  --bundle") || strings.Contains(flags, "\n  -b ") {
			t.Errorf("%q: aliases on separate lines:\n%s", args, flags)
		}
	}
}

// An error is said once: on stderr, not a second time by the default logger
// (which also writes to stderr when there is no --log).
func TestErrorPrintedOnce(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"--root", root, "state", "missing"},
		{"--root", root, "state"},
		{"--root", root, "state", "--bogus", "x"},
		{"--x"},
		{"frobnicate"},
	} {
		r := moat(t, args...)
		if r.code != 1 {
			t.Errorf("%q: exit %d", args, r.code)
		}
		if r.osStderr != "" {
			t.Errorf("%q: the error was also logged to stderr:\n%s%s", args, r.stderr, r.osStderr)
		}
		if n := strings.Count(r.stderr, "\n"); n != 1 {
			t.Errorf("%q: %d stderr lines: %q", args, n, r.stderr)
		}
		if strings.HasPrefix(r.stderr, "moat moat:") {
			t.Errorf("%q: doubled prefix in %q", args, r.stderr)
		}
	}
}

func TestArgumentCount(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		args []string
		got  string
	}{
		{[]string{"state"}, "got 0 argument(s)"},
		{[]string{"state", "a", "b"}, "got 2 argument(s)"},
		{[]string{"delete", "a", "b", "c"}, "got 3 argument(s)"},
		{[]string{"list", "extra"}, "got 1 argument(s)"},
		{[]string{"features", "x"}, "got 1 argument(s)"},
	} {
		r := moat(t, append([]string{"--root", root}, tc.args...)...)
		if r.code != 1 {
			t.Errorf("%q: exit %d", tc.args, r.code)
		}
		for _, want := range []string{"usage", tc.got, "moat " + tc.args[0] + " --help"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, r.stderr, want)
			}
		}
	}
	r := moat(t, "--root", root, "state", "a", "b")
	if !strings.Contains(r.stderr, "expects CONTAINER-ID") {
		t.Errorf("synopsis missing: %q", r.stderr)
	}
	r = moat(t, "--root", root, "list", "x")
	if !strings.Contains(r.stderr, "expects no arguments") {
		t.Errorf("no-argument synopsis missing: %q", r.stderr)
	}
}

func TestFeatures(t *testing.T) {
	r := moat(t, "features")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.all())
	}
	var f features.Features
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("features output is not OCI features JSON: %v\n%s", err, r.stdout)
	}
	if f.OCIVersionMin != "1.0.0" || f.OCIVersionMax != specs.Version {
		t.Errorf("versions %q..%q", f.OCIVersionMin, f.OCIVersionMax)
	}
	if len(f.Hooks) != 6 {
		t.Errorf("hooks %v", f.Hooks)
	}
	if !reflect.DeepEqual(f.MountOptions, spec.MountOptionNames()) {
		t.Errorf("mount options %v", f.MountOptions)
	}
	if f.Linux == nil || len(f.Linux.Namespaces) != 8 || len(f.Linux.Capabilities) != len(spec.CapabilityNames()) {
		t.Errorf("linux features %+v", f.Linux)
	}
	if f.Linux.Seccomp == nil || f.Linux.Seccomp.Enabled == nil || !*f.Linux.Seccomp.Enabled || len(f.Linux.Seccomp.Actions) == 0 {
		t.Errorf("seccomp features %+v", f.Linux.Seccomp)
	}
}

func TestSpecCommand(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		dir := t.TempDir()
		args := []string{"spec", "--bundle", dir}
		if rootless {
			args = append(args, "--rootless")
		}
		r := moat(t, args...)
		if r.code != 0 {
			t.Fatalf("%q: exit %d: %s", args, r.code, r.all())
		}
		cfg := filepath.Join(dir, "config.json")
		before, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := spec.Load(dir); err == nil || !strings.Contains(err.Error(), "root.path") {
			t.Errorf("Load without a rootfs = %v", err)
		}
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := spec.Load(dir)
		if err != nil {
			t.Fatalf("rootless=%v: spec.Load refuses moat's own default spec: %v", rootless, err)
		}
		if rootless != spec.HasNamespace(b.Spec, specs.UserNamespace) {
			t.Errorf("rootless=%v: user namespace %v", rootless, !rootless)
		}
		if len(b.Warnings) != 0 {
			t.Errorf("warnings for the default spec: %v", b.Warnings)
		}
		r = moat(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "already exists") {
			t.Errorf("second spec: exit %d, stderr %q", r.code, r.stderr)
		}
		after, _ := os.ReadFile(cfg)
		if !bytes.Equal(before, after) {
			t.Error("second spec overwrote config.json")
		}
	}
	r := moat(t, "spec", "--bundle", filepath.Join(t.TempDir(), "missing"))
	if r.code != 1 {
		t.Errorf("spec into a missing directory: exit %d", r.code)
	}
}

func TestSpecFlags(t *testing.T) {
	load := func(args ...string) *specs.Spec {
		t.Helper()
		dir := t.TempDir()
		if r := moat(t, append([]string{"spec", "--bundle", dir}, args...)...); r.code != 0 {
			t.Fatalf("spec %q: exit %d: %s", args, r.code, r.all())
		}
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var s specs.Spec
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	s := load()
	if !s.Root.Readonly || s.Process.Terminal || !reflect.DeepEqual(s.Process.Args, []string{"sh"}) {
		t.Errorf("default: readonly %v terminal %v args %q; want a read-only root, sh without a terminal",
			s.Root.Readonly, s.Process.Terminal, s.Process.Args)
	}
	s = load("--writable", "--tty", "--", "python3", "-c", "print(1)")
	if s.Root.Readonly || !s.Process.Terminal || !reflect.DeepEqual(s.Process.Args, []string{"python3", "-c", "print(1)"}) {
		t.Errorf("--writable --tty -- CMD: readonly %v terminal %v args %q", s.Root.Readonly, s.Process.Terminal, s.Process.Args)
	}
	r := moat(t, "spec", "--help")
	for _, want := range []string{"[-- COMMAND [ARG...]]", "--writable", "--tty", "--rootless", "read-only", "memory layer"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("spec --help lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestStateOfMissingContainer(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	r := moat(t, "--root", root, "state", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "does not exist") || !strings.Contains(r.stderr, "nope") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = moat(t, "--root", root, "state", "bad/id")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid container id") {
		t.Errorf("invalid id: exit %d, stderr %q", r.code, r.stderr)
	}
	r = moat(t, "--root", root, "kill", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("kill: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestDeleteMissing(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"--force", "-f"} {
		r := moat(t, "--root", root, "delete", f, "nope")
		if r.code != 0 || r.all() != "" {
			t.Errorf("delete %s: exit %d, stderr %q", f, r.code, r.all())
		}
	}
	r := moat(t, "--root", root, "delete", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("delete without --force: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestListEmpty(t *testing.T) {
	root := filepath.Join(t.TempDir(), "fresh")
	r := moat(t, "--root", root, "list", "--format", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.all())
	}
	var v []any
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v) != 0 {
		t.Errorf("list --format json on an empty root printed %q", r.stdout)
	}
	if s := strings.TrimSpace(r.stdout); s != "null" && s != "[]" {
		t.Errorf("printed %q, want null or []", s)
	}
	for _, q := range []string{"--quiet", "-q"} {
		r = moat(t, "--root", root, "list", q)
		if r.code != 0 || r.stdout != "" {
			t.Errorf("list %s: exit %d, stdout %q", q, r.code, r.stdout)
		}
	}
	r = moat(t, "--root", root, "list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ID") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("list table: exit %d, stdout %q", r.code, r.stdout)
	}
	r = moat(t, "--root", root, "list", "--format", "yaml")
	if r.code != 1 || !strings.Contains(r.stderr, "yaml") {
		t.Errorf("bad format: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestLogFileJSON(t *testing.T) {
	root := t.TempDir()
	logFile := filepath.Join(t.TempDir(), "moat.log")
	if err := os.WriteFile(logFile, []byte("{\"level\":\"info\",\"msg\":\"earlier\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := moat(t, "--root", root, "--log", logFile, "--log-format", "json", "state", "nope")
	if r.code != 1 {
		t.Fatalf("exit %d", r.code)
	}
	if !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("stderr %q", r.stderr)
	}
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["msg"] != "earlier" {
		t.Fatalf("log file not appended to: %v", lines)
	}
	last := lines[1]
	if last["level"] != "error" || !strings.Contains(last["msg"].(string), "does not exist") {
		t.Errorf("error line = %v", last)
	}
	if _, ok := last["time"]; !ok {
		t.Errorf("no time in %v", last)
	}
	// A usage error goes to the log file too (shims read only the log).
	r = moat(t, "--root", root, "--log", logFile, "--log-format", "json", "state")
	data, _ := os.ReadFile(logFile)
	if r.code != 1 || !strings.Contains(string(data), "argument(s)") {
		t.Errorf("usage error not logged: exit %d, log:\n%s", r.code, data)
	}
	r = moat(t, "--log", filepath.Join(t.TempDir(), "no", "such", "dir", "log"), "list")
	if r.code != 1 || !strings.Contains(r.stderr, "--log") {
		t.Errorf("unwritable --log: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestIsInternal(t *testing.T) {
	for args, want := range map[string]bool{
		"moat init":             true,
		"moat --debug init --x": true,
		"moat boot":             false,
		"moat list init":        false,
		"moat --root=/r init":   true,
		"moat --root /r init":   false, // "/r" is taken for the command
		"moat":                  false,
		"moat --version":        false,
	} {
		if got := isInternal(strings.Fields(args)); got != want {
			t.Errorf("isInternal(%q) = %v", args, got)
		}
	}
}
