package cgroup

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A process forked by a thread that entered the birthplace starts in every
// hierarchy of the container's cgroup (with its limits already set), and
// the thread, once it left, is back in this process's own cgroups: the
// container's cgroup lists the child alone.
func TestHostBirthplace(t *testing.T) {
	requireRoot(t)
	res := &specs.LinuxResources{}
	if available("pids") {
		res.Pids = &specs.LinuxPids{Limit: ptr(int64(64))}
	}
	m := newTestManager(t, Options{ContainerID: "birth", CgroupsPath: uniquePath(t), Resources: res}, nil)
	b, err := m.PrepareBirth()
	if err != nil {
		t.Fatalf("PrepareBirth: %v", err)
	}
	if b == nil {
		t.Skip("births cannot be placed here (kernel before 5.7 with cgroup v2)")
	}
	defer b.Close()
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if fd := b.FD(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	var threadAfter map[string]string
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread was in the cgroup
		leave, err := b.Enter()
		if err == nil {
			err = cmd.Start()
			if lerr := leave(); err == nil {
				err = lerr
			}
		}
		if err == nil {
			threadAfter, err = cgroups.ParseCgroupFile("/proc/thread-self/cgroup")
		}
		if !maps.Equal(threadAfter, own) {
			// Out by hand: a test thread left inside would be frozen and
			// killed with the container's cgroup at cleanup.
			for _, h := range b.home {
				_ = writeSelf(h)
			}
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("enter, fork, leave: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if !maps.Equal(threadAfter, own) {
		t.Errorf("the thread did not go back: %v, want %v", threadAfter, own)
	}
	child, err := cgroups.ParseCgroupFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	rel := m.Saved().CgroupsPath
	for k := range m.Saved().Paths {
		if !strings.HasSuffix(child[k], rel) {
			t.Errorf("child's %q cgroup is %q, want one ending in %s", k, child[k], rel)
		}
	}
	for k, dir := range m.Saved().Paths {
		data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(data)); !slices.Equal(got, []string{strconv.Itoa(cmd.Process.Pid)}) {
			t.Errorf("%q cgroup.procs = %v, want the child alone (%d)", k, got, cmd.Process.Pid)
		}
	}
	if available("pids") {
		expectCg(t, cgPath(t, m, "pids"), "pids.max", "64")
	}
}
