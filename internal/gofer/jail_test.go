package gofer

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/spec"
)

// An optional bind mount (moat do's host submounts) whose source is gone
// is not served, and its io socket is closed; a plain one still fails.
func TestPlanTreesOptionalGone(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	present := filepath.Join(dir, "present")
	for _, d := range []string{rootfs, present} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gone := filepath.Join(dir, "gone")
	s := &specs.Spec{Root: &specs.Root{Path: rootfs}, Mounts: []specs.Mount{
		{Destination: "/a", Type: "bind", Source: gone, Options: []string{"rbind", spec.OptionalMount}},
		{Destination: "/b", Type: "bind", Source: present, Options: []string{"rbind"}},
	}}
	trees, err := planTrees(s, dir, rootfs, config.OverlayMemory, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	var served []int
	for _, tr := range trees {
		served = append(served, tr.mount.SpecIndex)
	}
	if !slices.Equal(served, []int{-1, 1}) {
		t.Fatalf("served trees %v, want the root and mounts[1]", served)
	}
	var fds []int
	for range 3 {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	got, err := treeIoFDs(trees, []int{0, 1}, fds)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []int{fds[0], fds[2]}) {
		t.Errorf("io descriptors %v, want %v", got, []int{fds[0], fds[2]})
	}
	if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the left-out mount's io descriptor is still open (%v)", err)
	}
	unix.Close(fds[0])
	unix.Close(fds[2])

	s.Mounts[0].Options = []string{"rbind"}
	if _, err := planTrees(s, dir, rootfs, config.OverlayMemory, []int{0, 1}); err == nil {
		t.Error("a plain bind mount with its source gone was accepted")
	}
}
