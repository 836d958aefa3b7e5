package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	probeBin  string
	buildErr  error
)

// probe builds the binary once (statically, as the e2e tests do).
func probe(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "probe-test-")
		if err != nil {
			buildErr = err
			return
		}
		probeBin = filepath.Join(dir, "probe")
		cmd := exec.Command("go", "build", "-o", probeBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(err.Error() + ": " + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building probe: %v", buildErr)
	}
	return probeBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if probeBin != "" {
		os.RemoveAll(filepath.Dir(probeBin))
	}
	os.Exit(code)
}

// run executes the probe binary (path) with args and returns stdout and the
// exit status.
func run(t *testing.T, path string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %q: %v", path, args, err)
	}
	if stderr.Len() > 0 {
		t.Logf("%q stderr: %s", args, stderr.String())
	}
	return stdout.String(), code
}

// runJSON runs a probe command that must succeed and decodes its output.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, code := run(t, probe(t), args...)
	if code != 0 {
		t.Fatalf("%q: exit %d", args, code)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%q: bad JSON %q: %v", args, out, err)
	}
}

func TestExitCodes(t *testing.T) {
	p := probe(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"true"}, 0},
		{[]string{"false"}, 1},
		{[]string{"exit", "7"}, 7},
		{[]string{"no-such-command"}, 127},
		{[]string{"exit"}, 2},
		{[]string{"help"}, 0},
	} {
		if _, code := run(t, p, tc.args...); code != tc.code {
			t.Errorf("%q: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestEchoAndArgv0(t *testing.T) {
	p := probe(t)
	if out, _ := run(t, p, "echo", "a", "b  c"); out != "a b  c\n" {
		t.Errorf("echo: %q", out)
	}
	dir := t.TempDir()
	for _, name := range []string{"echo", "false"} {
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if out, _ := run(t, filepath.Join(dir, "echo"), "hi"); out != "hi\n" {
		t.Errorf("argv[0] echo: %q", out)
	}
	if _, code := run(t, filepath.Join(dir, "false")); code != 1 {
		t.Errorf("argv[0] false: exit %d", code)
	}
}

func TestID(t *testing.T) {
	var id struct {
		UID, EUID, GID int
		Groups         []int
	}
	runJSON(t, &id, "id")
	if id.UID != os.Getuid() || id.EUID != os.Geteuid() || id.GID != os.Getgid() || id.Groups == nil {
		t.Errorf("id: %+v", id)
	}
}

func TestCaps(t *testing.T) {
	var caps struct {
		Inh, Prm, Eff, Bnd string
		Names              map[string][]string
	}
	runJSON(t, &caps, "caps")
	if caps.Bnd == "" || caps.Eff == "" {
		t.Fatalf("caps: %+v", caps)
	}
	want, err := decodeCaps(caps.Bnd)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(caps.Names["bnd"], ",") != strings.Join(want, ",") {
		t.Errorf("bnd names %v, want %v", caps.Names["bnd"], want)
	}
}

func TestDecodeCaps(t *testing.T) {
	names, err := decodeCaps("0000010000000005")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, ","); got != "CAP_CHOWN,CAP_DAC_READ_SEARCH,CAP_CHECKPOINT_RESTORE" {
		t.Errorf("decodeCaps: %s", got)
	}
}

func TestStat(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if _, code := run(t, probe(t), "write", file, "hello"); code != 0 {
		t.Fatalf("write: exit %d", code)
	}
	var st struct {
		Mode, Type string
		Size       int64
		UID        int
	}
	runJSON(t, &st, "stat", file)
	if st.Type != "file" || st.Size != 5 || st.UID != os.Getuid() {
		t.Errorf("stat file: %+v", st)
	}
	if err := os.Chmod(dir, 0o750|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	runJSON(t, &st, "stat", dir)
	if st.Type != "dir" || st.Mode != "1750" {
		t.Errorf("stat dir: %+v", st)
	}
}

func TestTry(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	type result struct {
		OK    bool
		Errno int
		Data  *string
	}
	for _, tc := range []struct {
		args  []string
		ok    bool
		errno syscall.Errno
		data  string
	}{
		{[]string{"mkdir", sub}, true, 0, ""},
		{[]string{"mkdir", sub}, false, syscall.EEXIST, ""},
		{[]string{"write", sub + "/f", "data"}, true, 0, ""},
		{[]string{"read", sub + "/f"}, true, 0, "data"},
		{[]string{"read", sub + "/nope"}, false, syscall.ENOENT, ""},
		{[]string{"rmdir", sub}, false, syscall.ENOTEMPTY, ""},
		{[]string{"chmod", sub + "/f", "600"}, true, 0, ""},
	} {
		var r result
		runJSON(t, &r, append([]string{"try"}, tc.args...)...)
		if r.OK != tc.ok || r.Errno != int(tc.errno) {
			t.Errorf("try %q: %+v, want ok=%v errno=%d", tc.args, r, tc.ok, tc.errno)
		}
		if tc.data != "" && (r.Data == nil || *r.Data != tc.data) {
			t.Errorf("try %q: data %v, want %q", tc.args, r.Data, tc.data)
		}
	}
	if fi, err := os.Stat(sub + "/f"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("after try chmod: %v %v", fi.Mode(), err)
	}
}

func TestSyscall(t *testing.T) {
	var r struct{ Ret, Errno int }
	runJSON(t, &r, "syscall", "getpid")
	if r.Ret <= 0 || r.Errno != 0 {
		t.Errorf("getpid: %+v", r)
	}
	// mkdirat(AT_FDCWD, existing dir) -> EEXIST, with a string argument.
	runJSON(t, &r, "syscall", "mkdirat", "-100", t.TempDir(), "0755")
	if r.Ret != -1 || r.Errno != int(syscall.EEXIST) {
		t.Errorf("mkdirat: %+v", r)
	}
}

func TestSignals(t *testing.T) {
	cmd := exec.Command(probe(t), "signals")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timeout waiting for %q", want)
		}
	}
	expect("ready")
	cmd.Process.Signal(syscall.SIGUSR1)
	expect("SIGUSR1")
	cmd.Process.Signal(syscall.Signal(36))
	expect("SIGRTMIN+2")
	cmd.Process.Signal(syscall.SIGTERM)
	expect("SIGTERM")
	if err := cmd.Wait(); err != nil {
		t.Errorf("signals: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for s, want := range map[string]syscall.Signal{
		"TERM": syscall.SIGTERM, "sigusr1": syscall.SIGUSR1, "9": syscall.SIGKILL,
		"RTMIN+3": 37, "SIGRTMAX": 64, "SIGRTMAX-1": 63, "IOT": syscall.SIGABRT,
	} {
		if got, err := parseSignal(s); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
}
