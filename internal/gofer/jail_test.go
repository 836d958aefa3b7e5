package gofer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
)

// jailDirs makes a temporary directory holding an empty rootfs and a
// directory "present" (a bind source that exists).
func jailDirs(t *testing.T) (dir, rootfs, present string) {
	dir = t.TempDir()
	rootfs = filepath.Join(dir, "rootfs")
	present = filepath.Join(dir, "present")
	for _, d := range []string{rootfs, present} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, rootfs, present
}

// The gofer plans from its part of the plan alone: the bind mounts the CLI
// chose, and the mount points of the rest (made in the image when the root
// is written through, a file for a bind of a file).
func TestPlanTreesFromConfig(t *testing.T) {
	dir, rootfs, present := jailDirs(t)
	c := &ipc.BootGoferConfig{Rootfs: rootfs, Overlay: config.OverlayNone, Cwd: "/work",
		Binds: []ipc.GoferBind{
			{SpecIndex: 0, Source: filepath.Join(dir, "gone"), Destination: "/a", Optional: true},
			{SpecIndex: 1, Source: present, Destination: "/b", ReadOnly: true},
		},
		MountPoints: []ipc.MountPoint{{Destination: "/a"}, {Destination: "/b"}, {Destination: "/etc/hosts", File: true}, {Destination: "/proc"}},
	}
	trees, err := planTrees(c)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, tr := range trees {
		got = append(got, tr.mount.SpecIndex)
	}
	if !slices.Equal(got, []int{-1, 0, 1}) || trees[0].mount.ReadOnly || !trees[2].mount.ReadOnly || !trees[1].optional {
		t.Fatalf("trees %v (%+v)", got, trees)
	}
	if st, err := os.Stat(filepath.Join(rootfs, "etc/hosts")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("the file mount point was not made a file: %v %v", st, err)
	}
	for _, d := range []string{"proc", "work"} {
		if st, err := os.Stat(filepath.Join(rootfs, d)); err != nil || !st.IsDir() {
			t.Errorf("mount point /%s: %v %v", d, st, err)
		}
	}
	// Served binds get their mount point only once their source is open.
	if _, err := os.Stat(filepath.Join(rootfs, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point /b made before its source was opened: %v", err)
	}

	bad := *c
	bad.Binds = []ipc.GoferBind{{SpecIndex: 7, Source: present, Destination: "/x"}}
	if _, err := planTrees(&bad); err == nil {
		t.Error("a bind mount outside the mount points was accepted")
	}
	bad.Binds = []ipc.GoferBind{{SpecIndex: 1, Source: "present", Destination: "/b"}}
	if _, err := planTrees(&bad); err == nil {
		t.Error("a relative bind source was accepted")
	}
}

// The gofer opens every source itself and serves only a directory of an
// ordinary file system: an optional bind mount whose source is gone is left
// out (and its io socket closed), a plain one fails, and a source swapped
// for a file or a kernel file system after the CLI looked is refused.
func TestCloneTreesChecksWhatItOpened(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("open_tree(OPEN_TREE_CLONE) needs CAP_SYS_ADMIN: run the unit tests as root (the e2e suite covers rootless)")
	}
	dir, rootfs, present := jailDirs(t)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &ipc.BootGoferConfig{Rootfs: rootfs, Overlay: config.OverlayNone,
		Binds: []ipc.GoferBind{
			{SpecIndex: 0, Source: filepath.Join(dir, "gone"), Destination: "/a", Optional: true},
			{SpecIndex: 1, Source: present, Destination: "/b"},
		},
		MountPoints: []ipc.MountPoint{{Destination: "/a"}, {Destination: "/b"}},
	}
	trees, err := planTrees(c)
	if err != nil {
		t.Fatal(err)
	}
	kept, srcs, err := cloneTrees(rootfs, trees)
	if err != nil {
		t.Fatal(err)
	}
	closeAll(srcs)
	var served []int
	for _, tr := range kept {
		served = append(served, tr.mount.SpecIndex)
	}
	if !slices.Equal(served, []int{-1, 1}) {
		t.Fatalf("served trees %v, want the root and mounts[1]", served)
	}
	if st, err := os.Stat(filepath.Join(rootfs, "b")); err != nil || !st.IsDir() {
		t.Errorf("mount point /b of the written-through root: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point /a made for a source that is gone: %v", err)
	}
	var fds []int
	for range 3 {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	got, err := treeIoFDs(kept, c.Served(), fds)
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

	// Without the root (a shared root's gofer serves only the binds), a
	// mount point still goes into the image, not into the first bind.
	c.Binds = []ipc.GoferBind{{SpecIndex: 0, Source: present, Destination: "/c"}, {SpecIndex: 1, Source: present, Destination: "/b"}}
	c.MountPoints = []ipc.MountPoint{{Destination: "/c"}, {Destination: "/b"}}
	if trees, err = planTrees(c); err != nil {
		t.Fatal(err)
	}
	_, srcs, err = cloneTrees(rootfs, trees[1:])
	if err != nil {
		t.Fatal(err)
	}
	closeAll(srcs)
	if _, err := os.Stat(filepath.Join(rootfs, "c")); err != nil {
		t.Errorf("mount point /c of a bind without the root tree: %v", err)
	}
	if _, err := os.Stat(filepath.Join(present, "c")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point /c made in the first bind's source, not the image: %v", err)
	}

	for _, tc := range []struct {
		name, source string
		want         error
	}{
		{"a plain bind whose source is gone", filepath.Join(dir, "gone"), unix.ENOENT},
		{"a source swapped for a file", file, errNotServable},
		{"a source swapped for a kernel file system", "/proc", errNotServable},
	} {
		c.Binds = []ipc.GoferBind{{SpecIndex: 1, Source: tc.source, Destination: "/b"}}
		trees, err := planTrees(c)
		if err != nil {
			t.Fatal(err)
		}
		if _, srcs, err := cloneTrees(rootfs, trees); !errors.Is(err, tc.want) {
			closeAll(srcs)
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}
