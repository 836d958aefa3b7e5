package initproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/spec"
)

// goferRoot is init's side of the gofer: the FUSE mounts it makes and the
// io socket for each.
type goferRoot struct {
	plan   *ipc.GoferPlan
	io     []*ipc.Conn // one per plan.Mounts entry
	fuse   []*os.File  // an open /dev/fuse per entry, from boot
	base   string      // the sandbox tmpfs, covering the bundle's rootfs path
	userNS bool
	upper  string // the memory overlay's upper directory, once made
}

// buildGoferRoot mounts the container's root from the gofer: the read-only
// FUSE root under a memory overlay (the default), or the FUSE root itself
// (--overlay=none read-write, root.readonly read-only). The sandbox's own
// tmpfs covers the bundle's rootfs path in init's mount namespace, so the
// host's files are never mounted into the container directly.
// Postcondition: the returned rootfs is the container's future "/".
func (g *goferRoot) build(s *specs.Spec) (*rootfs, error) {
	size := g.plan.OverlaySize
	data := "mode=0755"
	if size > 0 {
		data += ",size=" + strconv.FormatInt(size, 10)
	}
	if err := unix.Mount("moat-sandbox", g.base, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return nil, fmt.Errorf("sandbox tmpfs: %w", err)
	}
	// pivot_root refuses a new root whose parent mount is shared (as it is
	// under rootfsPropagation=shared).
	if err := unix.Mount("", g.base, "", unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("sandbox tmpfs: %w", err)
	}
	rootRO := g.plan.Mounts[0].ReadOnly
	fuseDir := filepath.Join(g.base, "root")
	if err := os.Mkdir(fuseDir, 0o755); err != nil {
		return nil, err
	}
	if err := g.mountFuse(0, fuseDir, rootRO, 0); err != nil {
		return nil, err
	}
	procutil.Trace("init", "root fuse mounted")
	top := fuseDir
	if g.plan.Overlay == "memory" && rootRO && !s.Root.Readonly {
		var err error
		if top, err = g.overlay(fuseDir, s.Annotations[spec.AnnotationUpper] != ""); err != nil {
			return nil, err
		}
	}
	procutil.Trace("init", "root ready")
	r, err := openRoot(top, g.userNS)
	if err != nil {
		return nil, err
	}
	r.goferRoot = true
	return r, nil
}

// overlay stacks a writable memory layer on the read-only FUSE root. An
// upper layer shown to the container (exposeUpper) keeps its overlay
// attributes in user.overlay.* xattrs, which its processes can read.
func (g *goferRoot) overlay(lower string, shown bool) (string, error) {
	upper, work, merged := filepath.Join(g.base, "upper"), filepath.Join(g.base, "work"), filepath.Join(g.base, "merged")
	for _, d := range []string{upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	// The layers are named relative to the sandbox tmpfs (the working
	// directory for the mount): the container's /proc/self/mountinfo shows
	// the overlay's options, and must show nothing of the host's layout.
	rel := func(p string) (string, error) { return filepath.Rel(g.base, p) }
	relLower, err1 := rel(lower)
	relUpper, err2 := rel(upper)
	relWork, err3 := rel(work)
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", fmt.Errorf("memory overlay: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", relLower, relUpper, relWork)
	g.upper = upper
	if g.userNS || shown {
		// Without userxattr an overlay in a user namespace cannot write
		// its whiteouts: rm -rf of a lower directory fails with EIO.
		opts += ",userxattr"
	}
	// As real root an overlay re-enables device nodes and setuid even over a
	// nodev,nosuid lower: it must say so itself.
	if err := mountIn(g.base, func() error {
		return unix.Mount("moat-overlay", merged, "overlay", unix.MS_NODEV|unix.MS_NOSUID, opts)
	}); err != nil {
		return "", fmt.Errorf("memory overlay over the gofer's root: %w", err)
	}
	return merged, nil
}

// mountIn runs mount with dir as the working directory, then goes back.
// Precondition: init is building the root, on one thread, and no other
// goroutine uses relative paths meanwhile.
func mountIn(dir string, mount func() error) error {
	prev, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	err = mount()
	if cerr := os.Chdir(prev); err == nil {
		err = cerr
	}
	return err
}

// exposeUpper binds the overlay's upper directory, read-only, at the
// destination the spec's moat.upper annotation names: `moat do` lists (and
// keeps) the command's changes from it once the command has ended. It is
// the container's own writes, nothing of the host.
// Precondition: every spec mount is made (a mount on /dev would cover it).
func (g *goferRoot) exposeUpper(r *rootfs, s *specs.Spec) error {
	dest := s.Annotations[spec.AnnotationUpper]
	if dest == "" || g.upper == "" {
		return nil
	}
	dest = cleanDest(dest)
	d, err := r.ensureDir(dest)
	if err != nil {
		return fmt.Errorf("%s: %w", spec.AnnotationUpper, err)
	}
	err = unix.Mount(g.upper, fdPath(d), "", unix.MS_BIND, "")
	d.Close()
	if err == nil {
		err = r.remountBind(dest, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, false)
	}
	if err != nil {
		return fmt.Errorf("%s: show the upper layer: %w", spec.AnnotationUpper, err)
	}
	return nil
}

// mountFuse mounts FUSE connection i at target (a path or /proc/self/fd
// path) and hands the descriptor to the gofer. Init keeps no copy: if the
// gofer dies, the kernel aborts the connection.
func (g *goferRoot) mountFuse(i int, target string, ro bool, extra uintptr) error {
	f := g.fuse[i]
	defer f.Close()
	fd := int(f.Fd())
	if i == 0 && g.plan.SharedRoot {
		return attachShared(fd, target)
	}
	// default_permissions is mandatory: without it the kernel checks
	// nothing and the gofer would act with its own rights.
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd)
	flags := uintptr(unix.MS_NOSUID|unix.MS_NODEV) | extra
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("moat", target, "fuse.moat", flags, data); err != nil {
		return fmt.Errorf("mount the gofer's FUSE filesystem: %w", err)
	}
	if err := g.io[i].Send(ipc.InitFuseMounted{}, fd); err != nil {
		return fmt.Errorf("hand the FUSE descriptor to the gofer: %w", err)
	}
	return nil
}

// mountBind replaces a spec bind mount with the gofer's FUSE mount of the
// same source.
func (g *goferRoot) mountBind(r *rootfs, idx int, m specs.Mount, mo *spec.MountOptions) error {
	k := -1
	for j, gm := range g.plan.Mounts {
		if gm.SpecIndex == idx {
			k = j
		}
	}
	if k < 0 {
		return fmt.Errorf("the gofer does not serve this mount")
	}
	gm := g.plan.Mounts[k]
	extra := mo.Flags & (unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME | unix.MS_STRICTATIME)
	dest, err := r.ensureDir(m.Destination)
	if err != nil {
		return err
	}
	defer dest.Close()
	if err := g.mountFuse(k, fdPath(dest), gm.ReadOnly, extra); err != nil {
		return err
	}
	return r.afterMount(m.Destination, mo)
}

// serves reports whether the gofer serves spec mount i.
// planned reports whether the plan gave the gofer spec mount i.
func (g *goferRoot) planned(i int) bool { return slices.Contains(g.plan.Planned, i) }

func (g *goferRoot) serves(i int) bool {
	for _, gm := range g.plan.Mounts {
		if gm.SpecIndex == i {
			return true
		}
	}
	return false
}

func (g *goferRoot) close() {
	for _, c := range g.io {
		if c != nil {
			c.Close()
		}
	}
	for _, f := range g.fuse {
		f.Close()
	}
}

// attachShared attaches the shared gofer's read-only mount (a detached
// clone boot made) at target. It must be the moat FUSE file system, read-only,
// nosuid and nodev: the overlay's lower layer.
func attachShared(fd int, target string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("shared root: %w", err)
	}
	const want = unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV
	if st.Type != unix.FUSE_SUPER_MAGIC || st.Flags&want != want {
		return fmt.Errorf("shared root: not a read-only, nosuid, nodev FUSE mount")
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach the shared root: %w", err)
	}
	return nil
}
