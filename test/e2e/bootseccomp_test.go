package e2e

// Boot's seccomp filter (issue 17) and the spawner that forks boot's later
// children outside it: boot is filtered on every thread, while exec'd
// processes get exactly the spec's filter and hooks none.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// spawnerOf finds `moat spawner`, boot's child.
func spawnerOf(t *testing.T, boot int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	must(t, err)
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "\x00spawner\x00") {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]); len(f) > 1 && f[1] == strconv.Itoa(boot) {
			return pid
		}
	}
	t.Fatalf("no moat spawner below boot %d", boot)
	return 0
}

type seccompStatus struct {
	NNP            int `json:"nnp"`
	Seccomp        int `json:"seccomp"`
	SeccompFilters int `json:"seccomp_filters"`
}

func (e *env) execStatus(id string) seccompStatus {
	e.t.Helper()
	var st seccompStatus
	out := e.moat("exec", id, "probe", "status")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("probe status: %v\n%s", err, out)
	}
	return st
}

// TestBootSeccompFilter: once the container is created, every thread of
// boot has its filter (one level), the spawner none; an exec'd process in
// a container without a profile is unfiltered, a poststart hook too.
func TestBootSeccompFilter(t *testing.T) {
	e := newEnv(t)
	hookDir := filepath.Join(e.dir, "hooks")
	script := writeScript(t, hookDir, "sc.sh", "#!/usr/bin/bash\ngrep '^Seccomp' /proc/self/status > \"$1\"\n")
	hookOut := filepath.Join(hookDir, "poststart.seccomp")
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: script, Args: []string{"sc.sh", hookOut}}}}
	})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	defer e.moat("delete", "--force", id)
	pid := initPidOf(e, id)
	boot := parentOf(t, pid)
	for tid, st := range taskStatus(t, boot) {
		if st["Seccomp"] != "2" || st["Seccomp_filters"] != "1" {
			t.Errorf("boot thread %s: Seccomp %q Seccomp_filters %q, want 2 and 1", tid, st["Seccomp"], st["Seccomp_filters"])
		}
	}
	sp := spawnerOf(t, boot)
	for tid, st := range taskStatus(t, sp) {
		if st["Seccomp"] != "0" {
			t.Errorf("spawner thread %s: Seccomp %q, want 0", tid, st["Seccomp"])
		}
	}
	spSt := taskStatus(t, sp)[strconv.Itoa(sp)]
	if spSt["NoNewPrivs"] != "0" {
		t.Errorf("spawner NoNewPrivs %q: its children would inherit it", spSt["NoNewPrivs"])
	}
	// Confined to joining the pid namespace; the bounding set stays whole
	// for its children, executed as uid 0.
	const sysAdmin = 1 << unix.CAP_SYS_ADMIN
	if eff, prm := capHex(t, spSt["CapEff"]), capHex(t, spSt["CapPrm"]); eff != sysAdmin || prm != sysAdmin {
		t.Errorf("spawner CapEff %#x CapPrm %#x, want CAP_SYS_ADMIN (%#x) alone", eff, prm, uint64(sysAdmin))
	}
	if bnd, bootBnd := spSt["CapBnd"], taskStatus(t, boot)[strconv.Itoa(boot)]["CapBnd"]; bnd != bootBnd {
		t.Errorf("spawner CapBnd %s, want boot's %s", bnd, bootBnd)
	}
	for _, st := range taskStatus(t, pid) {
		if st["Seccomp"] != "0" {
			t.Errorf("container init: Seccomp %q, want 0 (the spec has no profile)", st["Seccomp"])
		}
	}
	if st := e.execStatus(id); st.Seccomp != 0 || st.SeccompFilters != 0 {
		t.Errorf("exec'd process: %+v, want no filter (the spec has none)", st)
	}
	if got := readTrim(t, hookOut); got != "Seccomp:\t0\nSeccomp_filters:\t0" {
		t.Errorf("poststart hook: %q, want unfiltered", got)
	}
	// The exec'd process is boot's child, as before (CLONE_PARENT).
	startMoat(e, nil, "exec", id, "probe", "hold", "30")
	var execPid int
	for deadline := time.Now().Add(10 * time.Second); execPid == 0 && time.Now().Before(deadline); {
		for _, p := range e.pids(id) {
			if p != pid {
				execPid = p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if execPid == 0 {
		t.Fatalf("no exec'd process in ps: %v", e.pids(id))
	}
	if pp := parentOf(t, execPid); pp != boot {
		t.Errorf("exec'd process %d: parent %d, want boot %d", execPid, pp, boot)
	}
}

// TestBootSeccompSpecProfile: an exec'd process of a container with a
// profile gets that filter alone (one level, not boot's beneath it).
func TestBootSeccompSpecProfile(t *testing.T) {
	e := newEnv(t)
	eperm := uint(unix.EPERM)
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{{Names: []string{"swapon"}, Action: specs.ActErrno, ErrnoRet: &eperm}},
		}
	})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	defer e.moat("delete", "--force", id)
	if st := e.execStatus(id); st.Seccomp != 2 || st.SeccompFilters != 1 {
		t.Errorf("exec'd process: %+v, want exactly the spec's filter (Seccomp 2, 1 filter)", st)
	}
	// The spec's filter is the one in force.
	var res struct{ Name string }
	out := e.moat("exec", id, "probe", "syscall", "swapon", "str:/nonexistent", "0")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Name != "EPERM" {
		t.Errorf("swapon under the spec's filter: %s (%v), want EPERM", out, err)
	}
}

// TestBootSeccompParallelExec: many execs at once all work through the
// spawner.
func TestBootSeccompParallelExec(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	defer e.moat("delete", "--force", id)
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.run(nil, "exec", id, "probe", "echo", strconv.Itoa(i))
			if r.code != 0 || strings.TrimSpace(r.stdout) != strconv.Itoa(i) {
				errs <- r.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("parallel exec failed:\n%s", s)
	}
}

// TestBootSpawnerKilled: with the spawner gone, exec fails at once with a
// clear error, boot logs why, and the container runs on.
func TestBootSpawnerKilled(t *testing.T) {
	e := newEnv(t)
	logFile := filepath.Join(e.dir, "boot.log")
	e.globals = append(e.globals, "--log", logFile)
	b := e.newBundle([]string{"hold", "60"})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	defer e.moat("delete", "--force", id)
	pid := initPidOf(e, id)
	boot := parentOf(t, pid)
	sp := spawnerOf(t, boot)
	must(t, unix.Kill(sp, unix.SIGKILL))
	if !waitGone(sp, 10*time.Second) {
		t.Fatalf("spawner %d still there after SIGKILL", sp)
	}
	r := e.run(nil, "exec", id, "probe", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "spawner") {
		t.Errorf("exec without the spawner: want a failure naming it\n%s", r)
	}
	if st := e.status(id); st != "running" {
		t.Errorf("container is %s after the spawner died, want running", st)
	}
	data, err := os.ReadFile(logFile)
	must(t, err)
	if !strings.Contains(string(data), "spawner") {
		t.Errorf("boot's log does not say the spawner died:\n%s", data)
	}
}

// TestRunPoststopHookUnfiltered: a foreground run hosts boot, whose filter
// its own later children would inherit; a spec with poststop hooks (run by
// the run's delete) keeps a separate boot, so the hook sees no filter.
func TestRunPoststopHookUnfiltered(t *testing.T) {
	e := newEnv(t)
	hookDir := filepath.Join(e.dir, "hooks")
	script := writeScript(t, hookDir, "sc.sh", "#!/usr/bin/bash\ngrep '^Seccomp:' /proc/self/status > \"$1\"\n")
	hookOut := filepath.Join(hookDir, "poststop.seccomp")
	b := e.newBundle([]string{"true"}, func(s *specsSpec) {
		s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: script, Args: []string{"sc.sh", hookOut}}}}
	})
	if r := e.run(nil, "run", "--bundle", b.dir, e.id()); r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	out, err := os.ReadFile(hookOut)
	if err != nil {
		t.Fatalf("the poststop hook did not run: %v", err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[1] != "0" {
		t.Errorf("poststop hook of a foreground run: %q, want Seccomp 0 (boot's filter must not reach it)", out)
	}
}
