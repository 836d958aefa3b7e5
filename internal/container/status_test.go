package container

import (
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

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	mlog "github.com/moat-sandbox/moat/internal/log"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/state"
)

// sleeper starts a real process standing in for a container's init.
func sleeper(t *testing.T) (*exec.Cmd, uint64) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	start, err := procutil.StartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, start
}

// testRuntime is a Runtime over a temporary state root; warnings are kept.
type testRuntime struct {
	*Runtime
	mu    sync.Mutex
	warns []string
}

func newTestRuntime(t *testing.T) *testRuntime {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	tr := &testRuntime{}
	tr.Runtime = &Runtime{Config: &cfg, Store: st, Log: mlog.Discard(), Warn: func(m string) {
		tr.mu.Lock()
		tr.warns = append(tr.warns, m)
		tr.mu.Unlock()
	}}
	return tr
}

// record saves a container whose init is pid (started at start).
func (tr *testRuntime) record(t *testing.T, id string, pid int, start uint64, started bool, s *specs.Spec) *state.State {
	t.Helper()
	st, lk, err := tr.Store.Create(id)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	st.Bundle, st.Plan = "/bundle/"+id, &ipc.Plan{Spec: s, Rootfs: "/bundle/" + id + "/rootfs"}
	st.Created = time.Now().UTC()
	st.InitPid, st.InitStart, st.Started = pid, start, started
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStatus(t *testing.T) {
	tr := newTestRuntime(t)
	cmd, start := sleeper(t)
	pid := cmd.Process.Pid

	created := tr.record(t, "created", pid, start, false, nil)
	if got := Status(created); got != specs.StateCreated {
		t.Errorf("live init, not started: %s", got)
	}
	running := tr.record(t, "running", pid, start, true, nil)
	if got := Status(running); got != specs.StateRunning {
		t.Errorf("live init, started: %s", got)
	}
	// The pid now belongs to another process: a different start time.
	reused := tr.record(t, "reused", pid, start+1, true, nil)
	if got := Status(reused); got != specs.StateStopped {
		t.Errorf("pid reuse (wrong start time): %s, want stopped", got)
	}
	// Boot is alive but init is not known yet.
	booting := tr.record(t, "booting", 0, 0, false, nil)
	booting.BootPid, booting.BootStart = pid, start
	if got := Status(booting); got != specs.StateCreating {
		t.Errorf("boot alive, no init: %s", got)
	}
	booting.BootStart = start + 1
	if got := Status(booting); got != specs.StateStopped {
		t.Errorf("boot pid reused, no init: %s", got)
	}

	// A fresh directory without state.json is a create in progress; an old
	// one is the leftover of a crashed create.
	fresh, lk, err := tr.Store.Create("fresh")
	if err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	loaded, err := tr.Store.Load("fresh")
	if err != nil {
		t.Fatal(err)
	}
	if got := Status(loaded); got != specs.StateCreating {
		t.Errorf("fresh state dir: %s", got)
	}
	old := time.Now().Add(-time.Minute)
	os.Chtimes(fresh.Dir(), old, old)
	if got := Status(loaded); got != specs.StateStopped {
		t.Errorf("stale state dir: %s", got)
	}
	if got := Status(&state.State{ID: "x"}); got != specs.StateStopped {
		t.Errorf("empty state: %s", got)
	}

	cmd.Process.Kill()
	cmd.Wait()
	for _, s := range []*state.State{created, running} {
		if got := Status(s); got != specs.StateStopped {
			t.Errorf("%s after init died: %s", s.ID, got)
		}
	}
}

func TestStatusZombieIsStopped(t *testing.T) {
	cmd, start := sleeper(t)
	s := &state.State{ID: "z", InitPid: cmd.Process.Pid, InitStart: start, Started: true}
	cmd.Process.Signal(syscall.SIGKILL)
	// Not reaped yet: a zombie is not running.
	if !procutil.WaitGone(cmd.Process.Pid, start, 5*time.Second) {
		t.Fatal("process did not die")
	}
	if got := Status(s); got != specs.StateStopped {
		t.Errorf("zombie init: %s", got)
	}
}

func TestStateAndList(t *testing.T) {
	tr := newTestRuntime(t)
	cmd, start := sleeper(t)
	ann := map[string]string{"io.example": "yes"}
	tr.record(t, "b-running", cmd.Process.Pid, start, true, &specs.Spec{Annotations: ann})
	tr.record(t, "a-stopped", 999999999, 1, true, nil)

	st, err := tr.State("b-running")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != specs.StateRunning || st.Pid != cmd.Process.Pid || st.ID != "b-running" ||
		st.Bundle != "/bundle/b-running" || st.Rootfs != "/bundle/b-running/rootfs" || st.Annotations["io.example"] != "yes" ||
		st.Version != specs.Version || st.Created.IsZero() {
		t.Errorf("State = %+v", st)
	}
	data, _ := json.Marshal(st)
	for _, k := range []string{`"ociVersion"`, `"id":"b-running"`, `"pid":`, `"status":"running"`, `"bundle"`, `"rootfs"`, `"created"`, `"owner"`} {
		if !strings.Contains(string(data), k) {
			t.Errorf("state JSON lacks %s: %s", k, data)
		}
	}
	stopped, err := tr.State("a-stopped")
	if err != nil {
		t.Fatal(err)
	}
	if stopped.Status != specs.StateStopped || stopped.Pid != 0 {
		t.Errorf("stopped container shows pid %d status %s", stopped.Pid, stopped.Status)
	}
	if _, err := tr.State("missing"); !errors.Is(err, state.ErrNotExist) {
		t.Errorf("State(missing) = %v", err)
	}
	all, err := tr.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != "a-stopped" || all[1].ID != "b-running" || all[1].Status != specs.StateRunning {
		t.Errorf("List = %+v", all)
	}
}

func TestDeleteRunsPoststopAndRemoves(t *testing.T) {
	tr := newTestRuntime(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "poststop.json")
	hook := filepath.Join(dir, "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\ncat > "+out+"\n"), 0o755)
	failing := filepath.Join(dir, "fail.sh")
	os.WriteFile(failing, []byte("#!/bin/sh\necho nope >&2\nexit 1\n"), 0o755)
	s := &specs.Spec{Hooks: &specs.Hooks{Poststop: []specs.Hook{{Path: failing}, {Path: hook}}}}
	st := tr.record(t, "done", 999999999, 1, true, s)

	if err := tr.Delete("done", false); err != nil {
		t.Fatalf("Delete of a stopped container: %v", err)
	}
	if _, err := os.Stat(st.Dir()); !os.IsNotExist(err) {
		t.Errorf("state dir survives Delete: %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("poststop hook did not run: %v", err)
	}
	var hs specs.State
	if err := json.Unmarshal(data, &hs); err != nil || hs.ID != "done" || hs.Status != specs.StateStopped || hs.Bundle != "/bundle/done" {
		t.Errorf("poststop state %s: %v", data, err)
	}
	if len(tr.warns) != 1 || !strings.Contains(tr.warns[0], "poststop hook #0") || !strings.Contains(tr.warns[0], "nope") {
		t.Errorf("failing poststop hook: warnings %q", tr.warns)
	}
	if err := tr.Delete("done", false); !errors.Is(err, state.ErrNotExist) {
		t.Errorf("second Delete = %v", err)
	}
	if err := tr.Delete("done", true); err != nil {
		t.Errorf("Delete --force of a missing container = %v", err)
	}
}

func TestDeleteRunning(t *testing.T) {
	tr := newTestRuntime(t)
	cmd, start := sleeper(t)
	tr.record(t, "live", cmd.Process.Pid, start, true, nil)
	err := tr.Delete("live", false)
	if !errors.Is(err, state.ErrRunning) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("Delete of a running container = %v", err)
	}
	if n := strings.Count(err.Error(), "running"); n != 1 {
		t.Errorf("Delete of a running container: %q says running %d times, want once", err, n)
	}
	if !procutil.Alive(cmd.Process.Pid, start) {
		t.Fatal("Delete without --force killed the process")
	}
	if err := tr.Delete("live", true); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("init not killed by Delete --force: %v", err)
	}
	if _, err := tr.Store.Load("live"); !errors.Is(err, state.ErrNotExist) {
		t.Errorf("state after Delete --force: %v", err)
	}
}

func TestKillWithoutBootSignalsInit(t *testing.T) {
	tr := newTestRuntime(t)
	cmd, start := sleeper(t)
	tr.record(t, "k", cmd.Process.Pid, start, true, nil)
	// No controller socket: Kill falls back to signalling init directly.
	if err := tr.Kill("k", unix.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("init not terminated: %v", err)
	}
	if err := tr.Kill("k", unix.SIGTERM, false); !errors.Is(err, state.ErrNotRunning) {
		t.Errorf("Kill of a stopped container = %v", err)
	}
	if err := tr.Kill("missing", unix.SIGTERM, false); !errors.Is(err, state.ErrNotExist) {
		t.Errorf("Kill(missing) = %v", err)
	}
}

func TestWrongStateOperations(t *testing.T) {
	tr := newTestRuntime(t)
	tr.record(t, "gone", 999999999, 1, true, &specs.Spec{Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}})
	if err := tr.Start("gone"); !errors.Is(err, state.ErrWrongState) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Start of a stopped container = %v", err)
	}
	if _, err := tr.Exec(ExecOptions{ID: "gone", Args: []string{"true"}}); !errors.Is(err, state.ErrWrongState) {
		t.Errorf("Exec in a stopped container = %v", err)
	}
	cmd, start := sleeper(t)
	tr.record(t, "running", cmd.Process.Pid, start, true, nil)
	if err := tr.Start("running"); !errors.Is(err, state.ErrWrongState) || !strings.Contains(err.Error(), "running") {
		t.Errorf("Start of a running container = %v", err)
	}
}
