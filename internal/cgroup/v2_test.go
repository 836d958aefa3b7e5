package cgroup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// v2Role is a re-executed test binary's that must see a pure cgroup v2
// host (see TestCgroupV2ViaMountNamespace); its argument is the parent's
// mount namespace.
const v2Role = "cgroup-v2"

const hybridUnified = "/sys/fs/cgroup/unified"

// becomeV2 makes this process see a pure cgroup v2 host by mounting the
// cgroup2 hierarchy over /sys/fs/cgroup. It refuses to do so unless the
// process has its own mount namespace, so the host's mounts are untouched.
func becomeV2(parent string) error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil || self == parent {
		return fmt.Errorf("refusing to mount over /sys/fs/cgroup outside a private mount namespace (%s, parent %s, %v)", self, parent, err)
	}
	if err := unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
		return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w", err)
	}
	return nil
}

// TestCgroupV2ViaMountNamespace runs every TestHost* test a second time on a
// hybrid host as if it were a pure cgroup v2 one: a re-executed test binary
// in a private mount namespace mounts the (controller-less) cgroup2 hierarchy
// at /sys/fs/cgroup, so the library selects its fs2 driver. Controllers bound
// to v1 are absent there, so that run exercises creation, cgroup.procs,
// freezing via cgroup.freeze, cgroup.kill, the eBPF device filter, the
// unified map, hugetlb (if unbound from v1), stats, and cleanup; the tests
// skip the limits of unavailable controllers.
func TestCgroupV2ViaMountNamespace(t *testing.T) {
	requireRoot(t)
	if role, _ := reexec.Role(); role == v2Role || isV2() {
		t.Skip("already on cgroup v2: the TestHost* tests exercise it directly")
	}
	if !cgroups.IsCgroup2HybridMode() {
		t.Skip("no cgroup2 hierarchy at " + hybridUnified)
	}
	// The library enables every available controller in the root's
	// cgroup.subtree_control when it creates a cgroup; undo that afterwards.
	before := subtreeControl(t)
	t.Cleanup(func() { restoreSubtreeControl(t, before) })

	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// The child checks it has left this namespace.
	cmd := reexec.Command(ctx, v2Role, ns, "-test.run=^TestHost", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	t.Logf("cgroup v2 child output:\n%s", out)
	if err != nil {
		t.Fatalf("TestHost* under cgroup v2 failed: %v", err)
	}
	if !strings.Contains(string(out), "cgroup mode: v2") {
		t.Fatal("the child did not run in cgroup v2 mode")
	}
	if strings.Count(string(out), "--- PASS: TestHost") < 5 {
		t.Fatal("too few TestHost* tests passed in the cgroup v2 child")
	}
}

func subtreeControl(t *testing.T) []string {
	data, err := os.ReadFile(filepath.Join(hybridUnified, "cgroup.subtree_control"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

func restoreSubtreeControl(t *testing.T, before []string) {
	for _, c := range subtreeControl(t) {
		if slices.Contains(before, c) {
			continue
		}
		f := filepath.Join(hybridUnified, "cgroup.subtree_control")
		if err := os.WriteFile(f, []byte("-"+c), 0); err != nil {
			t.Errorf("restore %s: disable %s: %v", f, c, err)
		}
	}
}
