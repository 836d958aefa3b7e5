package initproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/spec"
)

// fdPath names an open descriptor through /proc, which mount(2) and friends
// follow to the exact inode the descriptor holds.
// Precondition: the host's /proc is still mounted (before pivot_root).
func fdPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// rootfs is the container's future root while init builds it.
type rootfs struct {
	path      string   // host path of the root filesystem (a mount point after prepare)
	handle    *os.File // O_PATH handle on it; every lookup inside starts here
	userNS    bool
	goferRoot bool // the root is the gofer's (FUSE, maybe under an overlay)
}

// openRoot opens the root filesystem after it became a mount point.
func openRoot(path string, userNS bool) (*rootfs, error) {
	h, err := os.OpenFile(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", path, err)
	}
	return &rootfs{path: path, handle: h, userNS: userNS}, nil
}

func (r *rootfs) close() { r.handle.Close() }

// lookup opens dest inside the root, following symlinks as the container
// would see them and never leaving the root. It returns an O_PATH handle.
func (r *rootfs) lookup(dest string) (*os.File, error) {
	return pathrs.OpenatInRoot(r.handle, dest)
}

// ensureDir returns a handle on directory dest inside the root, creating it
// and its parents (mode 0755) if needed.
func (r *rootfs) ensureDir(dest string) (*os.File, error) {
	h, err := pathrs.MkdirAllHandle(r.handle, dest, 0o755)
	if err != nil {
		return nil, fmt.Errorf("directory %s in the root: %w", dest, err)
	}
	return h, nil
}

// ensureFile returns a handle on non-directory dest inside the root, creating
// an empty regular file (and its parents) if nothing is there.
func (r *rootfs) ensureFile(dest string) (*os.File, error) {
	if h, err := r.lookup(dest); err == nil {
		return h, nil
	} else if !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("mount destination %s: %w", dest, err)
	}
	parent, err := r.ensureDir(filepath.Dir(filepath.Clean(dest)))
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	dir, err := pathrs.Reopen(parent, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("mount destination %s: %w", dest, err)
	}
	defer dir.Close()
	base := filepath.Base(dest)
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o644)
	if err == nil {
		unix.Close(fd)
	} else if err != unix.EEXIST {
		return nil, fmt.Errorf("create mount destination %s: %w", dest, err)
	}
	return r.lookup(dest)
}

// isDir reports whether a handle refers to a directory.
func isDir(f *os.File) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// mountSpec performs one spec mount inside the root.
func (r *rootfs) mountSpec(m specs.Mount, mo *spec.MountOptions, cg *cgroupView) error {
	var err error
	switch {
	case spec.IsBind(m):
		err = r.mountBind(m, mo)
	case m.Type == "cgroup" || m.Type == "cgroup2":
		err = r.mountCgroup(m, mo, cg)
	default:
		err = r.mountFS(m, mo)
	}
	if err != nil {
		return fmt.Errorf("mount %s on %s (type %s): %w", m.Source, m.Destination, m.Type, err)
	}
	return nil
}

// mountSpecOrGofer performs spec mount i: bind mounts come from the gofer
// when there is one.
func (r *rootfs) mountSpecOrGofer(i int, m specs.Mount, cg *cgroupView, g *goferRoot) error {
	mo, err := spec.ParseMountOptions(m.Options)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Source, m.Destination, err)
	}
	if g != nil && spec.IsBind(m) && !g.serves(i) {
		if g.planned(i) {
			// An optional host tree the gofer found gone: never bound
			// directly, even if it is back.
			return nil
		}
		// Init's own (a file, a kernel file system, a device): never a
		// host tree the gofer would serve, whatever is there now.
		if err := r.mountBindNotTree(m, mo); err != nil {
			return fmt.Errorf("mount %s on %s (type %s): %w", m.Source, m.Destination, m.Type, err)
		}
		return nil
	}
	if g == nil || !spec.IsBind(m) {
		return r.mountSpec(m, mo, cg)
	}
	if err := g.mountBind(r, i, m, mo); err != nil {
		return fmt.Errorf("mount %s on %s (served by the gofer): %w", m.Source, m.Destination, err)
	}
	return nil
}

// mountFS mounts a new filesystem instance (proc, tmpfs, devpts, ...).
func (r *rootfs) mountFS(m specs.Mount, mo *spec.MountOptions) error {
	dest, err := r.ensureDir(m.Destination)
	if err != nil {
		return err
	}
	defer dest.Close()
	var covered *os.File
	if mo.TmpCopyUp && m.Type == "tmpfs" {
		if covered, err = openCopyUpSource(dest); err != nil {
			return err
		}
		defer covered.Close()
	}
	flags := mo.Flags &^ (unix.MS_BIND | unix.MS_REC)
	err = unix.Mount(m.Source, fdPath(dest), m.Type, flags, mo.DataString())
	if err == unix.EINVAL && r.userNS {
		// An owner (devpts gid=5, tmpfs uid=) with no id in the user
		// namespace: mount without it, as runc does for rootless.
		if data, cut := withoutIDOptions(mo.Data); cut {
			err = unix.Mount(m.Source, fdPath(dest), m.Type, flags, data)
		}
	}
	if err == unix.EPERM && m.Type == "sysfs" && r.userNS {
		// A user namespace that does not own the network namespace may not
		// mount sysfs: fall back to the host's, read-only (as RootlessKit).
		err = unix.Mount("/sys", fdPath(dest), "", unix.MS_BIND|unix.MS_REC, "")
		if err == nil {
			return r.remountBind(m.Destination, unix.MS_RDONLY|mo.Flags, true)
		}
	}
	if err != nil {
		return err
	}
	if covered != nil {
		if err := r.copyUpInto(m.Destination, covered); err != nil {
			return err
		}
	}
	return r.afterMount(m.Destination, mo)
}

// copyUpInto fills the tmpfs just mounted at dest with what it covers.
func (r *rootfs) copyUpInto(dest string, covered *os.File) error {
	h, err := r.lookup(dest)
	if err != nil {
		return err
	}
	defer h.Close()
	dst, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("tmpcopyup: open the new tmpfs: %w", err)
	}
	defer dst.Close()
	if err := copyUp(covered, dst, !r.goferRoot); err != nil {
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	return nil
}

// withoutIDOptions drops uid= and gid= from filesystem data.
func withoutIDOptions(data []string) (string, bool) {
	var keep []string
	cut := false
	for _, o := range data {
		if strings.HasPrefix(o, "uid=") || strings.HasPrefix(o, "gid=") {
			cut = true
			continue
		}
		keep = append(keep, o)
	}
	return strings.Join(keep, ","), cut
}

// mountBind bind-mounts a host path into the root. The source is absolute
// (the CLI resolved it against the bundle, in the plan); whether it is a
// directory is read from what was opened.
func (r *rootfs) mountBind(m specs.Mount, mo *spec.MountOptions) error {
	return r.bindSource(m, mo, false)
}

// mountBindNotTree is mountBind for a bind mount the plan did not give the
// gofer: what init opened must not be a directory of an ordinary file
// system, which only the gofer serves (the source changed since the CLI
// looked). An optional one that is such a directory now is left out.
func (r *rootfs) mountBindNotTree(m specs.Mount, mo *spec.MountOptions) error {
	return r.bindSource(m, mo, true)
}

// errGoferTree: init opened, for a bind mount of its own, a directory the
// gofer would serve.
var errGoferTree = errors.New("a directory of an ordinary file system, which the plan did not give the gofer (the source changed since the CLI looked)")

func (r *rootfs) bindSource(m specs.Mount, mo *spec.MountOptions, notTree bool) error {
	if !filepath.IsAbs(m.Source) {
		return fmt.Errorf("bind source %q is not absolute (the plan resolves it)", m.Source)
	}
	src, err := os.OpenFile(m.Source, unix.O_PATH|unix.O_CLOEXEC, 0)
	if mo.Optional && errors.Is(err, os.ErrNotExist) {
		return nil // gone from the host meanwhile: left out
	}
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	defer src.Close()
	srcIsDir, err := isDir(src)
	if err != nil {
		return err
	}
	if notTree && srcIsDir {
		var fs unix.Statfs_t
		if err := unix.Fstatfs(int(src.Fd()), &fs); err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		if !spec.IsKernelFS(fs.Type) {
			if mo.Optional {
				return nil // gone when the CLI looked: left out, as then
			}
			return fmt.Errorf("bind source %s: %w", m.Source, errGoferTree)
		}
	}
	var dest *os.File
	if srcIsDir {
		dest, err = r.ensureDir(m.Destination)
	} else {
		dest, err = r.ensureFile(m.Destination)
	}
	if err != nil {
		return err
	}
	defer dest.Close()
	if destIsDir, err := isDir(dest); err != nil {
		return err
	} else if destIsDir != srcIsDir {
		return fmt.Errorf("source is %s but destination is %s", kind(srcIsDir), kind(destIsDir))
	}
	bindFlags := uintptr(unix.MS_BIND) | mo.Flags&unix.MS_REC
	if err := unix.Mount(fdPath(src), fdPath(dest), "", bindFlags, ""); err != nil {
		return err
	}
	// Flags other than bind/rec need a remount of the new mount.
	if extra := mo.Flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); extra != 0 {
		if err := r.remountBind(m.Destination, extra, false); err != nil {
			return err
		}
	}
	return r.afterMount(m.Destination, mo)
}

func kind(dir bool) string {
	if dir {
		return "a directory"
	}
	return "not a directory"
}

// remountBind applies flags to the bind mount now at dest. In a user
// namespace the flags the kernel locked on the source mount (nosuid, nodev,
// noexec, ro, atime) must be kept or the remount fails with EPERM; keepLocked
// adds them always.
func (r *rootfs) remountBind(dest string, flags uintptr, keepLocked bool) error {
	h, err := r.lookup(dest)
	if err != nil {
		return err
	}
	defer h.Close()
	if r.userNS || keepLocked {
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(int(h.Fd()), &sfs); err == nil {
			flags |= uintptr(sfs.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY |
				unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
		}
	}
	flags &^= unix.MS_REC
	return unix.Mount("", fdPath(h), "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
}

// afterMount applies propagation changes and recursive attributes.
func (r *rootfs) afterMount(dest string, mo *spec.MountOptions) error {
	if len(mo.Propagation) == 0 && mo.RecAttrSet == 0 && mo.RecAttrClr == 0 {
		return nil
	}
	h, err := r.lookup(dest)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, p := range mo.Propagation {
		if err := unix.Mount("", fdPath(h), "", p, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	if mo.RecAttrSet != 0 || mo.RecAttrClr != 0 {
		attr := &unix.MountAttr{Attr_set: mo.RecAttrSet, Attr_clr: mo.RecAttrClr}
		if mo.RecAttrSet&(unix.MOUNT_ATTR_NOATIME|unix.MOUNT_ATTR_STRICTATIME|unix.MOUNT_ATTR_RELATIME) != 0 {
			attr.Attr_clr |= unix.MOUNT_ATTR__ATIME
		}
		if err := unix.MountSetattr(int(h.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("set recursive mount attributes: %w", err)
		}
	}
	return nil
}
