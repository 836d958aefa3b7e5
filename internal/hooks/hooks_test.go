package hooks

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// script writes an executable shell script and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testState() *specs.State {
	return &specs.State{
		Version: specs.Version, ID: "ctr-1", Status: specs.StateCreated, Pid: 4242, Bundle: "/bundles/ctr-1",
		Annotations: map[string]string{"org.example/key": "value with spaces"},
	}
}

func ptr[T any](v T) *T { return &v }

func TestRunPassesStateArgsEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MOAT_HOOK_TEST_LEAK", "must-not-reach-the-hook")
	stdinFile, argvFile, envFile := filepath.Join(dir, "stdin"), filepath.Join(dir, "argv"), filepath.Join(dir, "env")
	// /bin/sh itself is the hook so that argv[0] is observable in
	// /proc/$$/cmdline (a script's own $0 is always its path).
	h := specs.Hook{
		Path: "/bin/sh",
		Args: []string{"custom-argv0", "-c", `cat > "$1" && tr '\0' '\n' < /proc/$$/cmdline > "$2" && env > "$3"`,
			"inline", stdinFile, argvFile, envFile},
		Env: []string{"FOO=bar baz", "HOOKVAR=1"},
	}
	s := &specs.Spec{Hooks: &specs.Hooks{CreateRuntime: []specs.Hook{h}}}
	st := testState()
	if err := Run(s, CreateRuntime, st); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(stdinFile)
	if err != nil {
		t.Fatal(err)
	}
	var got specs.State
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("hook stdin is not the state JSON: %q: %v", data, err)
	}
	if !reflect.DeepEqual(&got, st) {
		t.Errorf("state on stdin = %+v, want %+v", got, *st)
	}
	argv, _ := os.ReadFile(argvFile)
	wantArgv := strings.Join(h.Args, "\n") + "\n"
	if string(argv) != wantArgv {
		t.Errorf("argv =\n%s\nwant\n%s", argv, wantArgv)
	}
	env, _ := os.ReadFile(envFile)
	for _, want := range []string{"FOO=bar baz\n", "HOOKVAR=1\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(string(env), "MOAT_HOOK_TEST_LEAK") {
		t.Errorf("the runtime's environment leaked into the hook:\n%s", env)
	}
}

func TestRunDefaultArgv(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	p := script(t, dir, "hook.sh", `echo "$# $0" > `+out)
	s := &specs.Spec{Hooks: &specs.Hooks{Poststart: []specs.Hook{{Path: p}}}}
	if err := Run(s, Poststart, testState()); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); string(got) != "0 "+p+"\n" {
		t.Errorf("hook without args saw %q", got)
	}
}

func TestRunFailure(t *testing.T) {
	dir := t.TempDir()
	ok := script(t, dir, "ok.sh", "cat >/dev/null")
	bad := script(t, dir, "bad.sh", "echo 'some stdout'; echo 'boom: the network is gone' >&2; exit 3")
	marker := filepath.Join(dir, "third-ran")
	third := script(t, dir, "third.sh", "touch "+marker)
	s := &specs.Spec{Hooks: &specs.Hooks{Prestart: []specs.Hook{{Path: ok}, {Path: bad}, {Path: third}}}}
	err := Run(s, Prestart, testState())
	if err == nil {
		t.Fatal("failing hook reported no error")
	}
	for _, want := range []string{"prestart hook #1", bad, "exit status 3", "boom: the network is gone"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("Run went on after a failing hook")
	}
	// A hook that cannot be started at all.
	s.Hooks.Prestart = []specs.Hook{{Path: filepath.Join(dir, "missing")}}
	err = Run(s, Prestart, testState())
	if err == nil || !strings.Contains(err.Error(), "prestart hook #0") || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing hook: %v", err)
	}
}

func TestRunLongOutputTruncated(t *testing.T) {
	dir := t.TempDir()
	p := script(t, dir, "noisy.sh", `i=0; while [ $i -lt 500 ]; do echo "line $i of noise"; i=$((i+1)); done >&2; exit 1`)
	s := &specs.Spec{Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: p}}}}
	err := Run(s, Poststop, testState())
	if err == nil {
		t.Fatal("no error")
	}
	if n := len(err.Error()); n > 2300 {
		t.Errorf("error is %d bytes long: hook output not bounded", n)
	}
}

func TestRunTimeoutKillsHookAndChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p := script(t, dir, "slow.sh", "sleep 100 &\necho $! > "+pidFile+"\nwait")
	s := &specs.Spec{Hooks: &specs.Hooks{CreateContainer: []specs.Hook{{Path: p, Timeout: ptr(1)}}}}
	start := time.Now()
	err := Run(s, CreateContainer, testState())
	elapsed := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "createContainer hook #0") {
		t.Fatalf("Run = %v, want a timeout error", err)
	}
	if elapsed < time.Second || elapsed > 3*time.Second {
		t.Errorf("Run took %s for a 1s timeout", elapsed)
	}
	data, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("the hook never wrote its child's pid: %v", rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 {
		t.Fatalf("bad pid %q", data)
	}
	// The orphaned sleep is reaped by init; zombies count as gone. No start
	// time means it is gone already.
	born, _ := procutil.StartTime(pid)
	if !procutil.WaitGone(pid, born, 2*time.Second) {
		t.Errorf("the hook's child %d (sleep 100) survived the timeout", pid)
	}
}

func TestRunChildHoldingOutputSucceeds(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The hook exits at once but leaves a child holding its stdout/stderr.
	p := script(t, dir, "leaky.sh", "sleep 30 &\necho $! > "+pidFile+"\nexit 0")
	s := &specs.Spec{Hooks: &specs.Hooks{Poststart: []specs.Hook{{Path: p, Timeout: ptr(20)}}}}
	start := time.Now()
	err := Run(s, Poststart, testState())
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Run waited %s for a child that kept the hook's output open", el)
	}
	// The hook itself exited 0: its exit status decides success (OCI), not
	// whether a background child it left still holds the output pipe.
	if err != nil {
		t.Errorf("hook exiting 0 reported as failed: %v", err)
	}
	if data, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func TestRunAll(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "middle-ran")
	bad1 := script(t, dir, "bad1.sh", "echo first >&2; exit 1")
	mid := script(t, dir, "mid.sh", "touch "+marker)
	bad2 := script(t, dir, "bad2.sh", "echo second >&2; exit 2")
	s := &specs.Spec{Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: bad1}, {Path: mid}, {Path: bad2}}}}
	errs := RunAll(s, Poststop, testState())
	if len(errs) != 2 {
		t.Fatalf("RunAll returned %d errors, want 2: %v", len(errs), errs)
	}
	if !strings.Contains(errs[0].Error(), "poststop hook #0") || !strings.Contains(errs[0].Error(), "first") {
		t.Errorf("errs[0] = %v", errs[0])
	}
	if !strings.Contains(errs[1].Error(), "poststop hook #2") || !strings.Contains(errs[1].Error(), "exit status 2") {
		t.Errorf("errs[1] = %v", errs[1])
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("RunAll skipped the hook after a failure")
	}
	if errs := RunAll(s, Prestart, testState()); len(errs) != 0 {
		t.Errorf("RunAll of an empty kind = %v", errs)
	}
	if errs := RunAll(nil, Poststop, testState()); len(errs) != 0 {
		t.Errorf("RunAll of a nil spec = %v", errs)
	}
}

func TestRunNothing(t *testing.T) {
	if err := Run(nil, Prestart, nil); err != nil {
		t.Errorf("nil spec: %v", err)
	}
	if err := Run(&specs.Spec{}, Poststop, testState()); err != nil {
		t.Errorf("no hooks: %v", err)
	}
}

func TestList(t *testing.T) {
	h := func(name string) []specs.Hook { return []specs.Hook{{Path: "/hooks/" + name}} }
	s := &specs.Spec{Hooks: &specs.Hooks{
		Prestart: h("prestart"), CreateRuntime: h("createRuntime"), CreateContainer: h("createContainer"),
		StartContainer: h("startContainer"), Poststart: h("poststart"), Poststop: h("poststop"),
	}}
	for _, k := range []Kind{Prestart, CreateRuntime, CreateContainer, StartContainer, Poststart, Poststop} {
		got := List(s, k)
		if len(got) != 1 || got[0].Path != "/hooks/"+string(k) {
			t.Errorf("List(%s) = %+v", k, got)
		}
	}
	if got := List(s, Kind("bogus")); got != nil {
		t.Errorf("List(bogus) = %+v", got)
	}
	if List(nil, Prestart) != nil || List(&specs.Spec{}, Prestart) != nil {
		t.Error("List without hooks is not nil")
	}
}

func TestState(t *testing.T) {
	s := &specs.Spec{Annotations: map[string]string{"a": "b"}}
	st := State("id1", "/bundle", 99, specs.StateRunning, s)
	want := &specs.State{Version: specs.Version, ID: "id1", Status: specs.StateRunning, Pid: 99, Bundle: "/bundle",
		Annotations: map[string]string{"a": "b"}}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("State = %+v, want %+v", st, want)
	}
	st = State("id2", "/b2", 0, specs.StateStopped, nil)
	if st.Annotations != nil || st.ID != "id2" || st.Status != specs.StateStopped || st.Version != specs.Version {
		t.Errorf("State without spec = %+v", st)
	}
	data, _ := json.Marshal(st)
	for _, k := range []string{`"ociVersion"`, `"id"`, `"status":"stopped"`, `"bundle"`} {
		if !strings.Contains(string(data), k) {
			t.Errorf("state JSON %s lacks %s", data, k)
		}
	}
}
