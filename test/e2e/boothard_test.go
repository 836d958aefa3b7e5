package e2e

// Boot hardened (issue 17): what `moat boot` keeps once the container is
// created, and that what it spawns afterwards (exec'd processes, hooks)
// still gets what the spec gives.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// taskStatus maps each thread of pid to its /proc/PID/task/TID/status
// fields.
func taskStatus(t *testing.T, pid int) map[string]map[string]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	must(t, err)
	out := map[string]map[string]string{}
	for _, en := range ents {
		data, err := os.ReadFile(filepath.Join(dir, en.Name(), "status"))
		if err != nil {
			continue // the thread exited
		}
		f := map[string]string{}
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				f[k] = strings.TrimSpace(v)
			}
		}
		out[en.Name()] = f
	}
	return out
}

func capHex(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	must(t, err)
	return v
}

// TestBootCapabilitiesDropped: in a user namespace (rootless), boot keeps
// only CAP_KILL and CAP_SYS_PTRACE, effective and permitted (the spawner
// joins the pid namespace for exec), on every thread once the container is
// created; its bounding set stays whole. An exec'd process still gets the
// spec's capabilities, a poststart hook the full set as before, and kill,
// ps and exec work on a container process of another uid.
func TestBootCapabilitiesDropped(t *testing.T) {
	if !rootless {
		t.Skip("SKIP (rootless tiers only): boot keeps its capabilities as real root")
	}
	e := newEnv(t)
	hookDir := filepath.Join(e.dir, "hooks")
	script := writeScript(t, hookDir, "caps.sh", "#!/usr/bin/bash\nsed -n 's/^CapEff:\\t//p' /proc/self/status > \"$1\"\n")
	hookOut := filepath.Join(hookDir, "poststart.caps")
	user := specs.User{}
	if !singleIDMap {
		user = specs.User{UID: 1000, GID: 1000}
	}
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
		s.Process.User = user
		s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: script, Args: []string{"caps.sh", hookOut}}}}
	})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	defer e.moat("delete", "--force", id)
	pid := initPidOf(e, id)
	boot := parentOf(t, pid)
	const wantEff = 1<<unix.CAP_KILL | 1<<unix.CAP_SYS_PTRACE
	const wantPrm = wantEff
	var bnd uint64
	for tid, st := range taskStatus(t, boot) {
		if eff, prm := capHex(t, st["CapEff"]), capHex(t, st["CapPrm"]); eff != wantEff || prm != wantPrm {
			t.Errorf("boot thread %s: CapEff %#x CapPrm %#x, want %#x %#x", tid, eff, prm, uint64(wantEff), uint64(wantPrm))
		}
		if inh := capHex(t, st["CapInh"]); inh != 0 {
			t.Errorf("boot thread %s: CapInh %#x", tid, inh)
		}
		bnd = capHex(t, st["CapBnd"])
	}
	if bnd&(1<<unix.CAP_SYS_ADMIN) == 0 {
		t.Errorf("boot's bounding set %#x lost CAP_SYS_ADMIN: exec helpers could not set up", bnd)
	}

	// The hook ran at start, after the drop: execve as root gives it the
	// bounding set again, as before.
	if got := capHex(t, readTrim(t, hookOut)); got != bnd {
		t.Errorf("poststart hook CapEff %#x, want boot's bounding set %#x", got, bnd)
	}
	// The exec'd process gets exactly the spec's capabilities (as init).
	initEff := ""
	for _, st := range taskStatus(t, pid) {
		initEff = st["CapEff"]
	}
	if out := e.moat("exec", id, "probe", "caps"); !strings.Contains(out, `"eff":"`+initEff+`"`) {
		t.Errorf("exec'd caps %s, want CapEff %s as the container's init", out, initEff)
	}
	// ps and kill reach a process of another uid (CAP_SYS_PTRACE, CAP_KILL).
	if pids := e.pids(id); len(pids) == 0 || pids[0] != pid {
		t.Errorf("ps: %v, want init %d first", pids, pid)
	}
	e.moat("kill", id, "KILL")
	e.waitStatus(id, "stopped")
}
