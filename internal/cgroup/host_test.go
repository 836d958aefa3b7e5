package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestHost* tests create real cgroups as root (no mocks). On a hybrid host
// TestCgroupV2ViaMountNamespace re-runs them against cgroup v2.

func TestHostMode(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	want := "v1"
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		want = "v2"
	} else if cgroups.IsCgroup2HybridMode() {
		want = "hybrid"
	}
	if got := Mode(); got != want {
		t.Fatalf("Mode() = %q, want %q", got, want)
	}
	t.Logf("cgroup mode: %s", Mode())
}

// limits are the values TestHostLifecycle sets and reads back; each applies
// only where its controller is available.
type limits struct {
	memory, pids, quota int64
	hugetlb             uint64
	descendants         string
}

func hugetlbUsable() bool {
	return available("hugetlb") && slices.Contains(cgroups.HugePageSizes(), "2MB")
}

func (l limits) spec() *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if available("memory") {
		r.Memory = &specs.LinuxMemory{Limit: ptr(l.memory)}
	}
	if available("pids") {
		r.Pids = &specs.LinuxPids{Limit: ptr(l.pids)}
	}
	if available("cpu") {
		r.CPU = &specs.LinuxCPU{Quota: ptr(l.quota), Period: ptr(uint64(100000))}
	}
	if hugetlbUsable() {
		r.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: l.hugetlb}}
	}
	if isV2() {
		r.Unified = map[string]string{"cgroup.max.descendants": l.descendants}
	}
	return r
}

func checkLimits(t *testing.T, m *Manager, l limits) {
	t.Helper()
	v1, v2 := !isV2(), isV2()
	if available("memory") {
		expectCg(t, cgPath(t, m, "memory"), map[bool]string{true: "memory.max", false: "memory.limit_in_bytes"}[v2], strconv.FormatInt(l.memory, 10))
	}
	if available("pids") {
		expectCg(t, cgPath(t, m, "pids"), "pids.max", strconv.FormatInt(l.pids, 10))
	}
	if available("cpu") && v1 {
		expectCg(t, cgPath(t, m, "cpu"), "cpu.cfs_quota_us", strconv.FormatInt(l.quota, 10))
	}
	if available("cpu") && v2 {
		expectCg(t, cgPath(t, m, "cpu"), "cpu.max", fmt.Sprintf("%d 100000", l.quota))
	}
	if hugetlbUsable() {
		file := map[bool]string{true: "hugetlb.2MB.max", false: "hugetlb.2MB.limit_in_bytes"}[v2]
		expectCg(t, cgPath(t, m, "hugetlb"), file, strconv.FormatUint(l.hugetlb, 10))
	}
	if v2 {
		expectCg(t, cgPath(t, m, ""), "cgroup.max.descendants", l.descendants)
	}
}

func TestHostLifecycle(t *testing.T) {
	requireRoot(t)
	c := startChild(t, tickScript)
	pid := c.cmd.Process.Pid
	initial := limits{memory: 64 << 20, pids: 64, quota: 50000, hugetlb: 4 << 21, descendants: "10"}
	res := initial.spec()
	if available("cpu") {
		res.CPU.Shares = ptr(uint64(512))
	}
	if available("cpuset") {
		res.CPU = cmpOr(res.CPU, &specs.LinuxCPU{})
		res.CPU.Cpus, res.CPU.Mems = "0", "0"
	}
	m := newTestManager(t, Options{ContainerID: "life", CgroupsPath: uniquePath(t), Resources: res}, c)
	if err := m.Apply(pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	checkLimits(t, m, initial)
	if available("cpuset") {
		expectCg(t, cgPath(t, m, "cpuset"), "cpuset.cpus", "0")
	}
	if pids, err := m.Pids(); err != nil || !slices.Contains(pids, pid) {
		t.Fatalf("Pids() = %v, %v; want it to contain %d", pids, err, pid)
	}
	if cg := procCgroups(t, pid); !strings.Contains(cg, m.Saved().CgroupsPath) {
		t.Errorf("/proc/%d/cgroup does not mention %s:\n%s", pid, m.Saved().CgroupsPath, cg)
	}

	updated := limits{memory: 128 << 20, pids: 32, quota: 20000, hugetlb: 4 << 22, descendants: "5"}
	if err := m.Update(updated.spec()); err != nil {
		t.Fatalf("Update: %v", err)
	}
	checkLimits(t, m, updated)
	checkSharesKept(t, m)
	checkPauseResume(t, m, c)
	checkStats(t, m)
	checkSavedLoad(t, m, c)
}

func cmpOr[T any](p, def *T) *T {
	if p != nil {
		return p
	}
	return def
}

// checkSharesKept verifies that Update kept a setting it was not given.
func checkSharesKept(t *testing.T, m *Manager) {
	t.Helper()
	switch {
	case !available("cpu"):
	case isV2():
		expectCg(t, cgPath(t, m, "cpu"), "cpu.weight", strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(512), 10))
	default:
		expectCg(t, cgPath(t, m, "cpu"), "cpu.shares", "512")
	}
	if got := m.Saved().Resources.CPU; available("cpu") && (got == nil || got.Shares == nil || *got.Shares != 512) {
		t.Errorf("saved resources lost cpu.shares after Update: %+v", got)
	}
}

func checkPauseResume(t *testing.T, m *Manager, c *child) {
	t.Helper()
	if c.countLines(time.Second) == 0 {
		t.Fatal("child is not ticking")
	}
	if err := m.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if isV2() {
		expectCg(t, cgPath(t, m, ""), "cgroup.freeze", "1")
		if ev := readCg(t, cgPath(t, m, ""), "cgroup.events"); !strings.Contains(ev, "frozen 1") {
			t.Errorf("cgroup.events after Pause: %q", ev)
		}
	} else {
		expectCg(t, cgPath(t, m, "freezer"), "freezer.state", "FROZEN")
	}
	t.Logf("frozen child %d is in state %s", c.cmd.Process.Pid, procState(c.cmd.Process.Pid))
	if paused, err := m.Paused(); err != nil || !paused {
		t.Errorf("Paused() = %v, %v after Pause", paused, err)
	}
	c.countLines(100 * time.Millisecond) // lines already in the pipe
	if n := c.countLines(500 * time.Millisecond); n != 0 {
		t.Errorf("child printed %d lines while paused", n)
	}
	if err := m.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if paused, err := m.Paused(); err != nil || paused {
		t.Errorf("Paused() = %v, %v after Resume", paused, err)
	}
	if !isV2() {
		expectCg(t, cgPath(t, m, "freezer"), "freezer.state", "THAWED")
	}
	if c.countLines(2*time.Second) == 0 {
		t.Error("child did not resume ticking")
	}
}

func checkStats(t *testing.T, m *Manager) {
	t.Helper()
	st, err := m.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Pids.Current == 0 || st.CPU.Usage.Total == 0 {
		t.Errorf("Stats: pids.current %d, cpu.usage.total %d; want both > 0", st.Pids.Current, st.CPU.Usage.Total)
	}
	if available("memory") && st.Memory.Usage.Usage == 0 {
		t.Errorf("Stats: memory.usage.usage is 0")
	}
	if available("pids") && st.Pids.Limit != 32 {
		t.Errorf("Stats: pids.limit = %d, want 32", st.Pids.Limit)
	}
	data, err := json.Marshal(NewStatsEvent("life", st))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct {
		Type string                     `json:"type"`
		ID   string                     `json:"id"`
		Data map[string]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "stats" || ev.ID != "life" {
		t.Errorf("event header = %q/%q", ev.Type, ev.ID)
	}
	for _, k := range []string{"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"} {
		if _, ok := ev.Data[k]; !ok {
			t.Errorf("stats event lacks data.%s: %s", k, data)
		}
	}
}

// checkSavedLoad round-trips the manager through JSON and drives the loaded
// copy to the end: pause, update, kill, destroy.
func checkSavedLoad(t *testing.T, m *Manager, c *child) {
	t.Helper()
	data, err := json.Marshal(m.Saved())
	if err != nil {
		t.Fatal(err)
	}
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	m2, err := Load(s)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if pids, err := m2.Pids(); err != nil || !slices.Contains(pids, c.cmd.Process.Pid) {
		t.Errorf("loaded Pids() = %v, %v", pids, err)
	}
	if err := m2.Pause(); err != nil {
		t.Fatalf("loaded Pause: %v", err)
	}
	if paused, _ := m.Paused(); !paused {
		t.Error("original manager does not see the pause made through the loaded one")
	}
	if err := m2.Resume(); err != nil {
		t.Fatalf("loaded Resume: %v", err)
	}
	if available("memory") {
		if err := m2.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(96 << 20))}}); err != nil {
			t.Fatalf("loaded Update: %v", err)
		}
		expectCg(t, cgPath(t, m2, "memory"), map[bool]string{true: "memory.max", false: "memory.limit_in_bytes"}[isV2()], strconv.Itoa(96<<20))
	}
	if err := m2.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("loaded Signal(SIGKILL): %v", err)
	}
	expectSignaled(t, c, syscall.SIGKILL)
	waitEmpty(t, m2)
	if err := m2.Destroy(); err != nil {
		t.Fatalf("loaded Destroy: %v", err)
	}
	for _, p := range s.Paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Destroy (%v)", p, err)
		}
	}
	if err := m2.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("Destroy through the original manager after removal: %v", err)
	}
}

func expectSignaled(t *testing.T, c *child, sig syscall.Signal) {
	t.Helper()
	err := c.wait(t, 5*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child exit: %v, want killed by %v", err, sig)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != sig {
		t.Fatalf("child exit: %v, want killed by %v", err, sig)
	}
}

// waitEmpty waits until the cgroup has no processes.
func waitEmpty(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := m.Pids()
		if err == nil && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup still has processes %v (%v)", pids, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHostSignal(t *testing.T) {
	requireRoot(t)
	c := startChild(t, "exec sleep 30")
	m := newTestManager(t, Options{ContainerID: "sig", CgroupsPath: uniquePath(t), Resources: noResources}, c)
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := m.Signal(unix.SIGTERM); err != nil {
		t.Fatalf("Signal(SIGTERM): %v", err)
	}
	expectSignaled(t, c, syscall.SIGTERM)
	waitEmpty(t, m)
	if paused, err := m.Paused(); err != nil || paused {
		t.Errorf("Paused() = %v, %v after Signal, want the freeze undone", paused, err)
	}
	if err := m.Signal(unix.SIGTERM); err != nil {
		t.Errorf("Signal on an empty cgroup: %v", err)
	}
}

// TestHostSignalWhilePaused: a paused container stays paused under SIGTERM
// (on v1 delivered on Resume; v2 lets fatal signals reach frozen tasks), but
// SIGKILL thaws it and kills.
func TestHostSignalWhilePaused(t *testing.T) {
	requireRoot(t)
	c := startChild(t, "exec sleep 30")
	c2 := startChild(t, "exec sleep 30")
	m := newTestManager(t, Options{ContainerID: "sigp", CgroupsPath: uniquePath(t), Resources: noResources}, c)
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := m.AddPid(c2.cmd.Process.Pid); err != nil {
		t.Fatalf("AddPid: %v", err)
	}
	if pids, _ := m.Pids(); len(pids) != 2 {
		t.Fatalf("Pids() = %v, want both children", pids)
	}
	if err := m.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := m.Signal(unix.SIGTERM); err != nil {
		t.Fatalf("Signal(SIGTERM): %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if paused, _ := m.Paused(); !paused {
		t.Fatal("SIGTERM unpaused the container")
	}
	// The v1 freezer holds every signal; v2 lets fatal ones through.
	if !isV2() && c.exited() {
		t.Fatal("a process frozen by the v1 freezer died before Resume")
	}
	if err := m.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	expectSignaled(t, c, syscall.SIGTERM)
	expectSignaled(t, c2, syscall.SIGTERM)

	c3 := startChild(t, "exec sleep 30")
	if err := m.AddPid(c3.cmd.Process.Pid); err != nil {
		t.Fatalf("AddPid: %v", err)
	}
	if err := m.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := m.Signal(unix.SIGKILL); err != nil {
		t.Fatalf("Signal(SIGKILL): %v", err)
	}
	expectSignaled(t, c3, syscall.SIGKILL)
	if paused, _ := m.Paused(); paused {
		t.Error("still paused after SIGKILL")
	}
}

func TestHostDevices(t *testing.T) {
	requireRoot(t)
	c := startChild(t, `read x; for d in null urandom kmsg loop-control; do
		if true </dev/$d 2>/dev/null; then echo $d=ok; else echo $d=denied; fi; done`)
	o := Options{
		ContainerID: "dev",
		CgroupsPath: uniquePath(t),
		Resources:   &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		Devices:     []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}},
	}
	m := newTestManager(t, o, c)
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !isV2() {
		list := readCg(t, cgPath(t, m, "devices"), "devices.list")
		if !strings.Contains(list, "c 1:11 rwm") || strings.Contains(list, "a *:*") {
			t.Errorf("devices.list:\n%s", list)
		}
	}
	fmt.Fprintln(c.stdin, "go")
	for _, want := range []string{"null=ok", "urandom=ok", "kmsg=ok", "loop-control=denied"} {
		if got := c.expectLine(t, 5*time.Second); got != want {
			t.Errorf("device access: got %q, want %q", got, want)
		}
	}
}

func TestHostBlkioThrottle(t *testing.T) {
	requireRoot(t)
	if !available(map[bool]string{true: "io", false: "blkio"}[isV2()]) {
		t.Skip("no blkio/io controller")
	}
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	major, minor := int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev))
	if _, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d/partition", major, minor)); err == nil || major == 0 {
		t.Skipf("/ is on %d:%d, not a whole disk", major, minor)
	}
	c := startChild(t, "exec sleep 30")
	dev := specs.LinuxBlockIODevice{Major: major, Minor: minor}
	res := &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
		ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: dev, Rate: 1 << 20}},
	}}
	m := newTestManager(t, Options{ContainerID: "blk", CgroupsPath: uniquePath(t), Resources: res}, c)
	if err := m.Apply(c.cmd.Process.Pid); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if isV2() {
		if got := readCg(t, cgPath(t, m, ""), "io.max"); !strings.Contains(got, fmt.Sprintf("%d:%d rbps=1048576", major, minor)) {
			t.Errorf("io.max = %q", got)
		}
		return
	}
	expectCg(t, cgPath(t, m, "blkio"), "blkio.throttle.read_bps_device", fmt.Sprintf("%d:%d 1048576", major, minor))
}
