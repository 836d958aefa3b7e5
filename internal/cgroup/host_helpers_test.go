package cgroup

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// echoScript answers each line on stdin with the same line, without forking
// (read and echo are shell builtins), so that the process alone shows
// whether it is frozen.
const echoScript = `while read l; do echo "$l"; done`

// expectAlive checks that h is not frozen: it must echo a line back.
func expectAlive(t *testing.T, h *child, what string) {
	t.Helper()
	if _, err := h.stdin.WriteString(what + "\n"); err != nil {
		t.Fatalf("%s: write to helper: %v", what, err)
	}
	if got := h.expectLine(t, 5*time.Second); got != what {
		t.Fatalf("%s: helper echoed %q", what, got)
	}
}

// underContainer reports whether pid's cgroup in hierarchy ctrl (a v1
// controller name) is m's or one below it.
func underContainer(t *testing.T, m *Manager, pid int, ctrl string) bool {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(procCgroups(t, pid)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && slices.Contains(strings.Split(f[1], ","), ctrl) {
			return strings.HasPrefix(f[2], m.Saved().CgroupsPath)
		}
	}
	return false
}

// TestHostHelpers: a helper charged with AddHelper sits below the
// container's cgroup where usage counts (v1: memory and cpu, not pids), is not listed by Pids or the
// container cgroup's cgroup.procs, keeps running while the container is
// paused and through Signal(SIGKILL), and Destroy returns it home and removes
// everything.
func TestHostHelpers(t *testing.T) {
	requireRoot(t)
	c := startChild(t, tickScript)
	h := startChild(t, echoScript)
	cpid, hpid := c.cmd.Process.Pid, h.cmd.Process.Pid
	home := procCgroups(t, hpid)
	m := newTestManager(t, Options{ContainerID: "helpers", CgroupsPath: uniquePath(t), Resources: memoryLimit(64 << 20)}, c)
	if err := m.Apply(cpid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := m.AddHelper(hpid); err != nil {
		t.Fatalf("AddHelper: %v", err)
	}
	charged := []string{""}
	if !isV2() {
		charged = nil
		for _, k := range helperV1 {
			if available(k) {
				charged = append(charged, k)
			}
		}
		for _, k := range []string{"freezer", "devices", "pids"} {
			if available(k) && underContainer(t, m, hpid, k) {
				t.Errorf("helper is in the container's %s cgroup", k)
			}
		}
	}
	for _, k := range charged {
		dir := filepath.Join(cgPath(t, m, k), HelperDir)
		if procs := readCg(t, dir, "cgroup.procs"); procs != strconv.Itoa(hpid) {
			t.Errorf("%s cgroup.procs = %q, want the helper %d", dir, procs, hpid)
		}
		// The container's tick loop forks sleeps: they are listed too.
		if procs := strings.Fields(readCg(t, cgPath(t, m, k), "cgroup.procs")); !slices.Contains(procs, strconv.Itoa(cpid)) ||
			slices.Contains(procs, strconv.Itoa(hpid)) {
			t.Errorf("container's %s cgroup.procs = %q, want %d and not the helper %d", k, procs, cpid, hpid)
		}
	}
	if !isV2() && available("memory") {
		// Hierarchical: the container's usage includes the helper's.
		own, _ := strconv.ParseInt(readCg(t, filepath.Join(cgPath(t, m, "memory"), HelperDir), "memory.usage_in_bytes"), 10, 64)
		all, _ := strconv.ParseInt(readCg(t, cgPath(t, m, "memory"), "memory.usage_in_bytes"), 10, 64)
		if all < own {
			t.Errorf("container's memory.usage_in_bytes %d is below the helper's %d", all, own)
		}
	}
	if pids, err := m.Pids(); err != nil || !slices.Contains(pids, cpid) || slices.Contains(pids, hpid) {
		t.Errorf("Pids() = %v, %v; want the container's %d, not the helper %d", pids, err, cpid, hpid)
	}
	expectAlive(t, h, "placed")

	if err := m.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	c.countLines(100 * time.Millisecond)
	if n := c.countLines(300 * time.Millisecond); n != 0 {
		t.Errorf("container printed %d lines while paused", n)
	}
	expectAlive(t, h, "paused")
	if err := m.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if c.countLines(2*time.Second) == 0 {
		t.Error("container did not resume")
	}
	if isV2() {
		if procs := readCg(t, filepath.Join(cgPath(t, m, ""), HelperDir), "cgroup.procs"); procs != strconv.Itoa(hpid) {
			t.Errorf("after Resume the helpers' cgroup.procs = %q, want %d back", procs, hpid)
		}
	}

	if err := m.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("Signal(SIGKILL): %v", err)
	}
	expectSignaled(t, c, syscall.SIGKILL)
	expectAlive(t, h, "killed")

	if err := m.Destroy(); err != nil {
		t.Fatalf("Destroy with a live helper: %v", err)
	}
	for _, k := range charged {
		if dir := cgPath(t, m, k); exists(dir) {
			t.Errorf("%s remains after Destroy", dir)
		}
	}
	if got := procCgroups(t, hpid); got != home {
		t.Errorf("helper's cgroups after Destroy:\n%s\nwant its home:\n%s", got, home)
	}
	expectAlive(t, h, "destroyed")
}

// TestHostHelperRecorded: only recorded helpers are moved. A pid reused by
// another process is left alone, and a Manager loaded from Saved knows the
// helpers (the CLI's pause on cgroup v2 parks them).
func TestHostHelperRecorded(t *testing.T) {
	requireRoot(t)
	c := startChild(t, "exec sleep 30")
	h := startChild(t, echoScript)
	m := newTestManager(t, Options{ContainerID: "recorded", CgroupsPath: uniquePath(t), Resources: noResources}, c)
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := m.AddHelper(h.cmd.Process.Pid); err != nil {
		t.Fatalf("AddHelper: %v", err)
	}
	saved := m.Saved()
	if saved.Helpers == nil || len(saved.Helpers.Procs) != 1 || saved.Helpers.Procs[0].Pid != h.cmd.Process.Pid {
		t.Fatalf("Saved().Helpers = %+v", saved.Helpers)
	}
	loaded, err := Load(saved)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	expectAlive(t, h, "paused by a loaded manager")
	if err := loaded.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	// A wrong start time stands for a reused pid: never moved.
	stale := []HelperProc{{Pid: h.cmd.Process.Pid, Start: saved.Helpers.Procs[0].Start + 1}}
	before := procCgroups(t, h.cmd.Process.Pid)
	if err := m.moveHelpers(stale, saved.Helpers.Home); err != nil {
		t.Fatal(err)
	}
	if got := procCgroups(t, h.cmd.Process.Pid); got != before {
		t.Errorf("a process under a recorded pid with another start time was moved:\n%s", got)
	}
}

// memoryLimit limits memory where the controller is available (no pids
// limit: on cgroup v2 it would leave the helpers uncharged).
func memoryLimit(n int64) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if available("memory") {
		r.Memory = &specs.LinuxMemory{Limit: ptr(n)}
	}
	return r
}

func exists(p string) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil
}
