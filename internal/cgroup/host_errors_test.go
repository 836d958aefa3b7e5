package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestHostBadInputs(t *testing.T) {
	requireRoot(t)
	type tc struct {
		name string
		o    Options
		want string
	}
	cases := []tc{
		{"negative memory", Options{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr(int64(-5))}}},
			"invalid linux.resources.memory.limit -5"},
		{"negative pids", Options{Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(-2))}}},
			"invalid linux.resources.pids.limit -2"},
		{"negative quota", Options{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr(int64(-7))}}},
			"invalid linux.resources.cpu.quota -7"},
		{"unknown cgroup device type", Options{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Type: "x", Access: "rwm"}}}},
			`invalid linux.resources.devices[0].type "x"`},
		{"unknown linux.devices type", Options{Devices: []specs.LinuxDevice{{Path: "/dev/foo", Type: "q", Major: 1, Minor: 2}}},
			`invalid linux.devices[0] (/dev/foo): unknown device type "q"`},
		{"escaping cgroupsPath", Options{CgroupsPath: testParent + "/../escape"}, `must not contain ".." components`},
		{"root cgroupsPath", Options{CgroupsPath: "/"}, "names the root cgroup"},
		{"systemd path for cgroupfs", Options{CgroupsPath: "system.slice:moat:x"}, "use the systemd cgroup driver"},
		{"malformed systemd path", Options{Systemd: true, CgroupsPath: "no-colons"}, `want "slice:prefix:name"`},
		{"bad container id", Options{ContainerID: "a/b"}, `invalid container id "a/b"`},
	}
	if isV2() {
		cases = append(cases, tc{"realtime on v2",
			Options{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr(int64(1000))}}}, "not supported on cgroup v2"})
	} else {
		cases = append(cases, tc{"unified on v1",
			Options{Resources: &specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}}, "only supported on cgroup v2"})
	}
	if !available("pids") {
		cases = append(cases, tc{"missing controller",
			Options{Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(5))}}}, `needs the "pids" cgroup controller`})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := uniquePath(t)
			if c.o.CgroupsPath == "" {
				c.o.CgroupsPath = p
			}
			if c.o.ContainerID == "" {
				c.o.ContainerID = "bad"
			}
			m, err := New(c.o)
			if err == nil || m != nil {
				t.Fatalf("New = %v, %v; want an error containing %q", m, err, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if left := leftovers(p); len(left) > 0 {
				t.Errorf("New left %v behind", left)
			}
		})
	}
}

// TestHostApplyFailureLeavesNothing: a value the kernel rejects fails Apply,
// removes what Apply created and leaves the process where it was.
func TestHostApplyFailureLeavesNothing(t *testing.T) {
	requireRoot(t)
	res := &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-1023"}}
	if isV2() {
		res = &specs.LinuxResources{Unified: map[string]string{"cgroup.bogus": "1"}}
	} else if !available("cpuset") {
		t.Skip("no cpuset controller")
	}
	c := startChild(t, "exec sleep 30")
	pid := c.cmd.Process.Pid
	before := procCgroups(t, pid)
	p := uniquePath(t)
	m := newTestManager(t, Options{ContainerID: "fail", CgroupsPath: p, Resources: res}, c)
	err := m.Apply(pid)
	if err == nil {
		t.Fatal("Apply succeeded with a value the kernel must reject")
	}
	t.Logf("Apply: %v", err)
	if left := leftovers(p); len(left) > 0 {
		t.Errorf("failed Apply left %v behind", left)
	}
	if after := procCgroups(t, pid); after != before {
		t.Errorf("failed Apply moved the process:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// withEUID runs f with the effective uid of the calling thread set to uid.
// The goroutine is locked to its thread, so everything f does runs as uid;
// the real and saved uids stay 0, so switching back restores root's
// capabilities. Threads the runtime creates meanwhile come from its template
// thread and keep uid 0. If the switch back fails, the thread is left locked
// and dies with the goroutine.
func withEUID(t *testing.T, uid int, f func()) {
	t.Helper()
	const keep = ^uintptr(0)
	runtime.LockOSThread()
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
		runtime.UnlockOSThread()
		t.Fatalf("setresuid(-1, %d, -1): %v", uid, e)
	}
	defer func() {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, 0, keep); e != 0 {
			t.Errorf("cannot regain euid 0 on this thread: %v", e)
			return
		}
		runtime.UnlockOSThread()
	}()
	f()
}

func TestHostRootlessNoAccess(t *testing.T) {
	requireRoot(t)
	const nobody = 65534
	res := &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}}
	if !available("pids") {
		res = noResources
	}

	// Detected by New.
	p := uniquePath(t)
	var m *Manager
	var err error
	withEUID(t, nobody, func() { m, err = New(Options{ContainerID: "rl", CgroupsPath: p, Rootless: true, Resources: res}) })
	if !errors.Is(err, ErrNoCgroupAccess) || m == nil {
		t.Fatalf("New as uid %d = %v, %v; want a disabled manager and ErrNoCgroupAccess", nobody, m, err)
	}
	t.Logf("New: %v", err)
	// Said as `moat doctor` says it, once.
	want := NoDelegation
	if !cgroups.IsCgroup2UnifiedMode() {
		want = NoV2Reason
	}
	if msg := err.Error(); !strings.Contains(msg, want) || !strings.Contains(msg, "moat doctor") || strings.Count(msg, "unavailable") != 1 {
		t.Errorf("New as uid %d: %q; want %q and moat doctor named, unavailable said once", nobody, msg, want)
	}
	checkDisabled(t, m)
	loaded, err := Load(m.Saved())
	if err != nil {
		t.Fatalf("Load of a disabled manager: %v", err)
	}
	checkDisabled(t, loaded)

	// Detected by Apply.
	c := startChild(t, "exec sleep 30")
	before := procCgroups(t, c.cmd.Process.Pid)
	p2 := uniquePath(t)
	m2 := newTestManager(t, Options{ContainerID: "rl2", CgroupsPath: p2, Rootless: true, Resources: res}, c)
	withEUID(t, nobody, func() { err = m2.Apply(c.cmd.Process.Pid) })
	if !errors.Is(err, ErrNoCgroupAccess) {
		t.Fatalf("Apply as uid %d: %v, want ErrNoCgroupAccess", nobody, err)
	}
	t.Logf("Apply: %v", err)
	checkDisabled(t, m2)
	if after := procCgroups(t, c.cmd.Process.Pid); after != before {
		t.Errorf("failed Apply moved the process")
	}

	// Without Rootless the same failure is a plain error.
	p3 := uniquePath(t)
	m3 := newTestManager(t, Options{ContainerID: "root", CgroupsPath: p3, Resources: res}, nil)
	withEUID(t, nobody, func() { err = m3.Apply(c.cmd.Process.Pid) })
	if err == nil || errors.Is(err, ErrNoCgroupAccess) {
		t.Fatalf("non-rootless Apply as uid %d: %v, want a plain error", nobody, err)
	}
	for _, path := range []string{p, p2, p3} {
		if left := leftovers(path); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}
}

func checkDisabled(t *testing.T, m *Manager) {
	t.Helper()
	if m.Saved().Unavailable == "" {
		t.Error("Saved().Unavailable is empty")
	}
	ops := map[string]error{
		"Apply":  m.Apply(os.Getpid()),
		"Update": m.Update(&specs.LinuxResources{}),
		"Pause":  m.Pause(),
		"Resume": m.Resume(),
		"Signal": m.Signal(syscall.SIGTERM),
	}
	_, ops["Pids"] = m.Pids()
	_, ops["Stats"] = m.Stats()
	for op, err := range ops {
		if !errors.Is(err, ErrNoCgroupAccess) || !strings.Contains(err.Error(), "cgroups are unavailable") {
			t.Errorf("%s on a disabled manager: %v", op, err)
		}
	}
	if paused, err := m.Paused(); paused || err != nil {
		t.Errorf("Paused() = %v, %v on a disabled manager", paused, err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("Destroy on a disabled manager: %v", err)
	}
}

func TestHostDefaultPath(t *testing.T) {
	requireRoot(t)
	const id = "moat-default-path-test"
	m, err := New(Options{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	paths := m.Saved().Paths
	if len(paths) == 0 {
		t.Fatal("no paths")
	}
	for ctrl, p := range paths {
		if filepath.Base(p) != id {
			t.Errorf("path for %q = %s, want a cgroup named %s", ctrl, p, id)
		}
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("New created %s (%v)", p, err)
		}
	}
	if isV2() {
		own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		// runc places it next to its own cgroup, not inside it.
		want := filepath.Join("/sys/fs/cgroup", filepath.Dir(own[""]), id)
		if paths[""] != want {
			t.Errorf("v2 default path = %s, want %s", paths[""], want)
		}
		return
	}
	own, err := cgroups.GetOwnCgroupPath("memory")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(own, id); paths["memory"] != want {
		t.Errorf("memory default path = %s, want %s (inside moat's own cgroup)", paths["memory"], want)
	}
}

func TestSystemdDriverWithoutSystemd(t *testing.T) {
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is running")
	}
	_, err := New(Options{ContainerID: "sd", Systemd: true})
	if !errors.Is(err, ErrSystemdNotRunning) || !strings.Contains(err.Error(), "/run/systemd/system") {
		t.Fatalf("New with systemd driver: %v, want ErrSystemdNotRunning naming /run/systemd/system", err)
	}
}
