package e2e

// cgroups: limits, placement, pause/resume, update, events, ps, and removal.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cgroupMounts maps each host cgroup hierarchy to its mount point: the key
// is its controller list as /proc/PID/cgroup names it ("memory",
// "name=systemd", "" for cgroup2).
func cgroupMounts(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	must(t, err)
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, _ := strings.Cut(sc.Text(), " - ")
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			out[""] = pf[4]
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(qf[2], ",") {
				if o != "rw" && o != "ro" && !strings.Contains(o, "clone_children") && o != "noprefix" {
					ctrls = append(ctrls, o)
				}
			}
			out[strings.Join(ctrls, ",")] = pf[4]
		}
	}
	return out
}

// cgroupDirs maps each hierarchy key to the host directory of pid's cgroup.
func cgroupDirs(t *testing.T, pid int) map[string]string {
	t.Helper()
	mounts := cgroupMounts(t)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	must(t, err)
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if mp, ok := mounts[f[1]]; ok {
			out[f[1]] = filepath.Join(mp, f[2])
		}
	}
	return out
}

// cgFile reads a cgroup file of the container whose init is pid.
func cgFile(t *testing.T, pid int, ctrl, file string) string {
	t.Helper()
	dir, ok := cgroupDirs(t, pid)[ctrl]
	if !ok {
		t.Fatalf("process %d has no %s cgroup", pid, ctrl)
	}
	return readTrim(t, filepath.Join(dir, file))
}

// limits is a LinuxResources with memory and pids limits.
func limits(mem, pids int64) *specs.LinuxResources {
	return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}, Pids: &specs.LinuxPids{Limit: &pids}}
}

// checkLimits checks the host's memory and pids limits of the container.
func checkLimits(t *testing.T, pid int, mem, pids int64) {
	t.Helper()
	if got := cgFile(t, pid, "memory", "memory.limit_in_bytes"); got != strconv.FormatInt(mem, 10) {
		t.Errorf("memory.limit_in_bytes %s, want %d", got, mem)
	}
	if got := cgFile(t, pid, "pids", "pids.max"); got != strconv.FormatInt(pids, 10) {
		t.Errorf("pids.max %s, want %d", got, pids)
	}
}

func TestCgroupLimitsApplied(t *testing.T) {
	needCgroups(t, "limits in the container's own cgroup")
	e := newEnv(t)
	id, pid := createHeld(e, false, func(s *specsSpec) {
		s.Linux.Resources = limits(64<<20, 32)
		s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: ptr(int64(50000)), Period: ptr(uint64(100000)), Shares: ptr(uint64(512))}
	})
	for ctrl, dir := range cgroupDirs(t, pid) {
		if filepath.Base(dir) != id {
			t.Errorf("%s cgroup %s is not the container's own", ctrl, dir)
		}
	}
	checkLimits(t, pid, 64<<20, 32)
	for file, want := range map[string]string{"cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000", "cpu.shares": "512"} {
		if got := cgFile(t, pid, "cpu", file); got != want {
			t.Errorf("%s %s, want %s", file, got, want)
		}
	}
	e.moat("delete", id)
}

func TestCgroupsPathExplicit(t *testing.T) {
	needCgroups(t, "a container cgroup at linux.cgroupsPath")
	e := newEnv(t)
	parent := fmt.Sprintf("/moat-e2e-%d", os.Getpid())
	mounts := cgroupMounts(t)
	t.Cleanup(func() {
		for _, mp := range mounts {
			os.Remove(filepath.Join(mp, parent))
		}
	})
	path := parent + "/" + runPrefix() + "explicit" // the leak check sees it
	id, pid := createHeld(e, false, func(s *specsSpec) {
		s.Linux.CgroupsPath = path
		s.Linux.Resources = limits(32<<20, 20)
	})
	dirs := cgroupDirs(t, pid)
	for _, ctrl := range []string{"memory", "pids", "cpu", "freezer", "devices"} {
		if want := filepath.Join(mounts[ctrl], path); dirs[ctrl] != want {
			t.Errorf("%s cgroup %s, want the cgroupsPath %s", ctrl, dirs[ctrl], want)
		}
	}
	checkLimits(t, pid, 32<<20, 20)
	e.moat("delete", id)
	for ctrl, dir := range dirs {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s cgroup %s remains after delete", ctrl, dir)
		}
	}
}

func TestCgroupPauseResume(t *testing.T) {
	needCgroups(t, "pause and resume freeze the container's cgroup")
	e := newEnv(t)
	b := e.newBundle([]string{"signals", "--ready", "/tmp/ready"}, func(s *specsSpec) {
		bindMount(s, e.dir, "/tmp", "rw")
	})
	id := e.id()
	out, wait := e.runDetachedOutput(b, id)
	waitFile(t, filepath.Join(e.dir, "ready"))
	pid := initPidOf(e, id)
	e.moat("pause", id)
	if st := e.status(id); st != "paused" {
		t.Errorf("after pause: status %s", st)
	}
	if fs := cgFile(t, pid, "freezer", "freezer.state"); fs != "FROZEN" {
		t.Errorf("freezer.state %s after pause", fs)
	}
	e.fails("paused", "pause", id)
	e.moat("kill", id, "USR1")
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(out(), "SIGUSR1") {
		t.Error("a paused container handled a signal")
	}
	e.moat("resume", id)
	if st := e.status(id); st != "running" {
		t.Errorf("after resume: status %s", st)
	}
	if fs := cgFile(t, pid, "freezer", "freezer.state"); fs != "THAWED" {
		t.Errorf("freezer.state %s after resume", fs)
	}
	e.fails("running", "resume", id)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out(), "SIGUSR1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out(), "SIGUSR1") {
		t.Errorf("resumed container did not handle the signal sent while paused: %q", out())
	}
	e.moat("kill", id, "TERM")
	wait()
}

func TestCgroupUpdate(t *testing.T) {
	needCgroups(t, "update writes the container's cgroup limits")
	e := newEnv(t)
	id, pid := createHeld(e, true, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 32) })
	checkLimits(t, pid, 64<<20, 32)
	file := filepath.Join(e.dir, "resources.json")
	data, err := json.Marshal(limits(128<<20, 64))
	must(t, err)
	must(t, os.WriteFile(file, data, 0o644))
	e.moat("update", "--resources", file, id)
	checkLimits(t, pid, 128<<20, 64)
	data, err = json.Marshal(limits(96<<20, 48))
	must(t, err)
	if r := e.run(strings.NewReader(string(data)), "update", "--resources", "-", id); r.code != 0 {
		t.Fatalf("update --resources -: %s", r)
	}
	checkLimits(t, pid, 96<<20, 48)
	e.moat("delete", "--force", id)
}

func TestCgroupEventsStats(t *testing.T) {
	needCgroups(t, "events --stats reads the container's cgroup")
	e := newEnv(t)
	id, _ := createHeld(e, true, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 32) })
	out := e.moat("events", "--stats", id)
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("events --stats printed %d lines, want 1:\n%s", n+1, out)
	}
	var ev struct {
		Type, ID string
		Data     struct {
			Memory struct{ Usage struct{ Usage, Limit uint64 } }
			Pids   struct{ Current, Limit uint64 }
		}
	}
	must(t, json.Unmarshal([]byte(out), &ev))
	d := ev.Data
	if ev.Type != "stats" || ev.ID != id || d.Memory.Usage.Usage == 0 || d.Pids.Current == 0 ||
		d.Memory.Usage.Limit != 64<<20 || d.Pids.Limit != 32 {
		t.Errorf("stats event %+v; want type stats, id %s, non-zero usage, limits 64MiB/32", ev, id)
	}
	e.moat("delete", "--force", id)
	e.fails("does not exist", "events", "--stats", id)
}

func TestCgroupPs(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"spawn", "2", "hold", "60"})
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	pid := initPidOf(e, id)
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) < 3 && time.Now().Before(deadline); {
		pids = e.pids(id)
		time.Sleep(20 * time.Millisecond)
	}
	if len(pids) != 3 || !slices.Contains(pids, pid) {
		t.Fatalf("ps --format json: %v, want init %d and its 2 children", pids, pid)
	}
	// ps works without a cgroup of the container's own (rootless: through
	// boot), so its pids are checked against the pid namespace as well.
	want, wantNS := cgroupDirs(t, pid)["memory"], ns(t, pid, "pid")
	for _, p := range pids {
		if got := cgroupDirs(t, p)["memory"]; got != want {
			t.Errorf("ps pid %d is not a host pid of the container (cgroup %q)", p, got)
		}
		if got := ns(t, p, "pid"); got != wantNS {
			t.Errorf("ps pid %d is not a host pid of the container (pid namespace %s, want %s)", p, got, wantNS)
		}
	}
	lines := strings.Split(strings.TrimSpace(e.moat("ps", id)), "\n")
	col := slices.Index(strings.Fields(lines[0]), "PID")
	if col < 0 || len(lines) != 4 {
		t.Fatalf("ps table:\n%s", strings.Join(lines, "\n"))
	}
	for _, l := range lines[1:] {
		if p, _ := strconv.Atoi(strings.Fields(l)[col]); !slices.Contains(pids, p) {
			t.Errorf("ps table line is not a container process: %q", l)
		}
	}
	e.moat("delete", "--force", id)
}

func TestCgroupPidsLimitEnforced(t *testing.T) {
	needCgroups(t, "pids.max is enforced by the container's cgroup")
	e := newEnv(t)
	for _, tc := range []struct {
		limit int64
		fail  bool
	}{{16, true}, {4096, false}} {
		b := e.newBundle([]string{"spawn", "40", "true"}, func(s *specsSpec) {
			s.Linux.Resources = &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &tc.limit}}
		})
		r := e.run(nil, "run", "--bundle", b.dir, e.id())
		hitLimit := strings.Contains(r.stderr, "resource temporarily unavailable") || strings.Contains(r.stderr, "errno=11")
		if tc.fail && (r.code == 0 || !hitLimit) {
			t.Errorf("40 processes under pids.max %d: want a fork failure (EAGAIN)\n%s", tc.limit, r)
		}
		if !tc.fail && r.code != 0 {
			t.Errorf("40 processes under pids.max %d: %s", tc.limit, r)
		}
	}
}

func TestCgroupRemovedAfterDelete(t *testing.T) {
	needCgroups(t, "delete removes the container's own cgroup")
	e := newEnv(t)
	id, pid := createHeld(e, true, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 32) })
	dirs := cgroupDirs(t, pid)
	for ctrl := range cgroupMounts(t) {
		if filepath.Base(dirs[ctrl]) != id {
			t.Errorf("hierarchy %q: container cgroup %q is not its own", ctrl, dirs[ctrl])
		}
	}
	e.moat("kill", id, "KILL")
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
	for ctrl, dir := range dirs {
		if _, err := os.Stat(dir); filepath.Base(dir) == id && err == nil {
			t.Errorf("hierarchy %q: %s remains after delete", ctrl, dir)
		}
	}
}

// TestCgroupHelpersCharged: moat's own processes for a container (boot and
// the gofer) sit in the helpers' cgroup below the container's memory and
// cpu cgroups, so the container's usage includes theirs and its limits
// bound them (issue 17), while the container cgroup's cgroup.procs and
// `moat ps` list only the container's processes. They stay out of its
// freezer cgroup: boot answers while the container is paused. Delete leaves
// no cgroup directory.
func TestCgroupHelpersCharged(t *testing.T) {
	needCgroups(t, "moat's own processes are charged to the container's cgroup")
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 64) })
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	pid := initPidOf(e, id)
	helpers := map[string]int{"boot": parentOf(t, pid)}
	if fileAccess == "gofer" {
		helpers["gofer"] = findGofer(t, b.dir)
	}
	ctr := cgroupDirs(t, pid)
	for name, hp := range helpers {
		dirs := cgroupDirs(t, hp)
		for _, ctrl := range []string{"memory", "cpu"} {
			if want := filepath.Join(ctr[ctrl], "moat-helpers"); dirs[ctrl] != want {
				t.Errorf("%s's %s cgroup %s, want %s", name, ctrl, dirs[ctrl], want)
			}
		}
		// Not pids: a Go process that cannot start a thread dies, so a
		// container at its pids limit would take its supervisor down.
		for _, ctrl := range []string{"freezer", "devices", "pids"} {
			if strings.HasPrefix(dirs[ctrl], ctr[ctrl]) {
				t.Errorf("%s is in the container's %s cgroup %s", name, ctrl, dirs[ctrl])
			}
		}
	}
	hdir := filepath.Join(ctr["memory"], "moat-helpers")
	own, _ := strconv.ParseInt(readTrim(t, filepath.Join(hdir, "memory.usage_in_bytes")), 10, 64)
	all, _ := strconv.ParseInt(cgFile(t, pid, "memory", "memory.usage_in_bytes"), 10, 64)
	if own <= 0 || all < own {
		t.Errorf("container's memory usage %d does not include moat's %d", all, own)
	}
	t.Logf("charged to the container: memory %d of %d bytes", own, all)
	for _, ctrl := range []string{"memory", "pids", "devices"} {
		if procs := readTrim(t, filepath.Join(ctr[ctrl], "cgroup.procs")); procs != strconv.Itoa(pid) {
			t.Errorf("container's %s cgroup.procs %q, want only init %d", ctrl, procs, pid)
		}
	}
	if pids := e.pids(id); !slices.Equal(pids, []int{pid}) {
		t.Errorf("moat ps: %v, want only init %d", pids, pid)
	}

	e.moat("pause", id)
	if st := e.status(id); st != "paused" {
		t.Errorf("after pause: status %s", st)
	}
	// Through boot's controller: answered while the container is frozen.
	e.moat("kill", id, "CONT")
	e.moat("resume", id)
	if out := e.moat("exec", id, "probe", "echo", "alive"); !strings.Contains(out, "alive") {
		t.Errorf("exec after resume: %q", out)
	}

	e.moat("delete", "--force", id)
	for ctrl, dir := range ctr {
		if _, err := os.Stat(dir); filepath.Base(dir) == id && err == nil {
			t.Errorf("%s cgroup %s remains after delete", ctrl, dir)
		}
	}
}
