package gofer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/gofer/fsys"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/spec"
)

// tree is one directory the gofer serves.
type tree struct {
	mount       ipc.GoferMount
	source      string // host path
	cache       fsys.Cache
	passthrough bool
	jailName    string // its directory in the jail
	// unmappedAsRoot: a read-only tree of the host's own files under the
	// memory overlay, served in a user namespace (see fsys.Options).
	unmappedAsRoot bool
	underlay       bool // the lower layer of init's memory overlay
	optional       bool // an optional bind mount: left out if its source is gone
	// createDest: its mount point is made in the image once its source
	// is open (the root is written through: no overlay).
	createDest bool
}

// options are the server options of t, asking for passthrough.
func (t *tree) options() fsys.Options {
	return fsys.Options{ReadOnly: t.mount.ReadOnly, Cache: t.cache, Passthrough: true,
		UnmappedAsRoot: t.unmappedAsRoot, OverlayLower: t.underlay}
}

// planTrees lists what the gofer serves, from its part of the plan: the
// root, then the bind mounts the CLI chose, in spec order, with
// destinations resolved inside the root filesystem. It opens no source
// (buildJail does, and checks what it opened); it creates the mount points
// of what it does not serve in the image when writes reach the image.
func planTrees(c *ipc.BootGoferConfig) ([]*tree, error) {
	rootfs := c.Rootfs
	rootRO := c.RootReadonly || c.Overlay == config.OverlayMemory
	root := &tree{
		mount:  ipc.GoferMount{SpecIndex: -1, Destination: "/", ReadOnly: rootRO},
		source: rootfs, cache: fsys.CacheShort, jailName: "root",
	}
	if rootRO {
		// The image behind a read-only root does not change under us.
		root.cache = fsys.CacheLong
	}
	// Init stacks its memory overlay on the root exactly then (goferRoot.build).
	root.underlay = c.Overlay == config.OverlayMemory && !c.RootReadonly
	trees := []*tree{root}
	binds := map[int]ipc.GoferBind{}
	for _, b := range c.Binds {
		binds[b.SpecIndex] = b
	}
	// Without the memory overlay there is nowhere else to create missing
	// mount points: they go into the image, as runc does.
	writeThrough := c.Overlay != config.OverlayMemory || c.RootReadonly
	var earlier []string
	for i, mp := range c.MountPoints {
		// A mount point under an earlier mount (/dev/pts under /dev) lives
		// in that mount, which init makes: not in the image.
		inImage := writeThrough && !underAny(mp.Destination, earlier)
		earlier = append(earlier, mp.Destination)
		b, served := binds[i]
		if !served {
			if inImage {
				if err := ensureDest(rootfs, mp.Destination, mp.File); err != nil {
					return nil, fmt.Errorf("mounts[%d] (%s): %w", i, mp.Destination, err)
				}
			}
			continue
		}
		t, err := planBind(b, rootfs, inImage)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d] (%s): %w", i, b.Destination, err)
		}
		trees = append(trees, t)
	}
	if len(trees) != 1+len(c.Binds) {
		return nil, fmt.Errorf("%d bind mounts to serve, %d of them among the %d mount points", len(c.Binds), len(trees)-1, len(c.MountPoints))
	}
	// The host's own "/" under the memory overlay (`moat do`) is mostly
	// owned by ids a rootless namespace does not map: shown as the
	// overflow id, the overlay could copy none of it up.
	if filepath.Clean(rootfs) == "/" && rootRO && !c.RootReadonly && !procutil.InitialUserNS() {
		for _, t := range trees {
			t.unmappedAsRoot = t.mount.ReadOnly
		}
	}
	if writeThrough && c.Cwd != "" && !underAny(c.Cwd, earlier) {
		if err := ensureDest(rootfs, c.Cwd, false); err != nil {
			return nil, fmt.Errorf("process.cwd: %w", err)
		}
	}
	return trees, nil
}

// underAny reports whether path lies strictly below one of dirs.
func underAny(path string, dirs []string) bool {
	p := filepath.Clean("/" + path)
	for _, d := range dirs {
		d = filepath.Clean("/" + d)
		if d == "/" || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// planBind resolves one bind mount the CLI chose. The destination is
// resolved inside the root filesystem as the container will see it; when
// the root is written through (no overlay), a missing destination is
// created in the image as runc does (once the source is open), otherwise
// init creates it in the overlay.
func planBind(b ipc.GoferBind, rootfs string, createDest bool) (*tree, error) {
	if !filepath.IsAbs(b.Source) {
		return nil, fmt.Errorf("bind source %q is not absolute (the CLI resolves it)", b.Source)
	}
	dest, err := securejoin.SecureJoin(rootfs, b.Destination)
	if err != nil {
		return nil, fmt.Errorf("resolve destination: %w", err)
	}
	rel, err := filepath.Rel(rootfs, dest)
	if err != nil {
		return nil, err
	}
	return &tree{
		mount: ipc.GoferMount{
			SpecIndex: b.SpecIndex, Destination: filepath.Join("/", rel), ReadOnly: b.ReadOnly,
		},
		source: b.Source, cache: fsys.CacheShort, jailName: "m" + strconv.Itoa(b.SpecIndex),
		optional: b.Optional, createDest: createDest,
	}, nil
}

// ensureDest creates a missing mount point inside the root filesystem.
func ensureDest(rootfs, dest string, file bool) error {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer root.Close()
	if h, err := pathrs.OpenatInRoot(root, dest); err == nil {
		h.Close()
		return nil
	}
	dir := dest
	if file {
		dir = filepath.Dir(dest)
	}
	h, err := pathrs.MkdirAllHandle(root, dir, 0o755)
	if err != nil {
		return fmt.Errorf("create mount point %s: %w", dest, err)
	}
	defer h.Close()
	if !file {
		return nil
	}
	d, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer d.Close()
	fd, err := unix.Openat(int(d.Fd()), filepath.Base(dest), unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create mount point %s: %w", dest, err)
	}
	if err == nil {
		unix.Close(fd)
	}
	return nil
}

// buildJail makes the gofer's root a small tmpfs holding one directory per
// served tree (each a bind of its source, read-only where the tree is),
// pivots into it and returns the trees served (optional bind mounts whose
// source was gone are left out) with an open directory for each.
// Precondition: the gofer runs in its own mount namespace.
func buildJail(at string, trees []*tree) ([]*tree, []*os.File, error) {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return nil, nil, fmt.Errorf("isolate mounts: %w", err)
	}
	// Each source (with its submounts) is cloned into a detached mount
	// before the jail exists: a recursive bind made afterwards would take
	// the jail along when it lies inside a source (the root's always does).
	trees, srcs, err := cloneTrees(at, trees)
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(srcs)
	// The jail covers the root filesystem's path: only in this mount
	// namespace, and nothing is created on the host.
	jail := spec.CoverDir(at)
	if err := unix.Mount("moat-gofer", jail, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64k"); err != nil {
		return nil, nil, fmt.Errorf("jail tmpfs: %w", err)
	}
	for i, t := range trees {
		if err := bindIntoJail(jail, t, srcs[i]); err != nil {
			return nil, nil, err
		}
	}
	procutil.Trace("gofer", "trees attached")
	dirs, err := openTrees(jail, trees)
	if err != nil {
		return nil, nil, err
	}
	// The jail becomes the root and everything else is detached: no
	// /proc, /dev or host path is reachable afterwards; the jail itself is
	// read-only (it holds nothing the gofer may change).
	if err := procutil.PivotInto(jail); err != nil {
		closeAll(dirs)
		return nil, nil, err
	}
	return trees, dirs, nil
}

// cloneTrees clones each tree's source (cloneTree), leaving out optional
// bind mounts whose source is gone, and then makes the mount points of
// those written through into the image at rootfs (trees need not start
// with the root: a shared root's gofer serves only the binds).
func cloneTrees(rootfs string, trees []*tree) ([]*tree, []*os.File, error) {
	var kept []*tree
	var srcs []*os.File
	for _, t := range trees {
		f, err := cloneTree(t)
		if t.optional && errors.Is(err, unix.ENOENT) {
			continue // init leaves it out too
		}
		if err != nil {
			closeAll(srcs)
			return nil, nil, err
		}
		kept, srcs = append(kept, t), append(srcs, f)
	}
	for _, t := range kept {
		if t.createDest {
			if err := ensureDest(rootfs, t.mount.Destination, false); err != nil {
				closeAll(srcs)
				return nil, nil, fmt.Errorf("mounts[%d] (%s): %w", t.mount.SpecIndex, t.mount.Destination, err)
			}
		}
	}
	return kept, srcs, nil
}

// errNotServable: what the gofer opened is not a directory of an ordinary
// file system (it changed since the CLI looked at it).
var errNotServable = errors.New("not a directory of an ordinary file system")

// cloneTree makes a detached copy of a tree's source mount (recursive),
// nodev and nosuid (no device node swapped in on the host can ever be
// opened through the gofer), and read-only when the tree is: the server
// refuses writes to a read-only tree itself, and so does the kernel. What
// it cloned must be a directory of an ordinary file system: the CLI chose
// the tree from what it saw, and the gofer serves only what it checked on
// the clone itself.
func cloneTree(t *tree) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, t.source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", t.source, err)
	}
	f := os.NewFile(uintptr(fd), t.source)
	if err := checkServable(fd); err != nil {
		f.Close()
		return nil, fmt.Errorf("serve %s: %w", t.source, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOSUID}
	if t.mount.ReadOnly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		f.Close()
		return nil, fmt.Errorf("restrict %s: %w", t.source, err)
	}
	return f, nil
}

// checkServable checks an opened tree: a directory, not a kernel file
// system.
func checkServable(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w (mode %#o)", errNotServable, st.Mode&unix.S_IFMT)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return err
	}
	if spec.IsKernelFS(fs.Type) {
		return fmt.Errorf("%w (file system type %#x)", errNotServable, fs.Type)
	}
	return nil
}

// bindIntoJail attaches a cloned tree at its place in the jail.
func bindIntoJail(jail string, t *tree, src *os.File) error {
	dir := filepath.Join(jail, t.jailName)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := unix.MoveMount(int(src.Fd()), "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s in the jail: %w", t.source, err)
	}
	return nil
}

func openTrees(jail string, trees []*tree) ([]*os.File, error) {
	var dirs []*os.File
	for _, t := range trees {
		d, err := os.OpenFile(filepath.Join(jail, t.jailName), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll(dirs)
			return nil, err
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
