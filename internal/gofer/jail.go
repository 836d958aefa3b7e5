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
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
}

// planTrees lists what the gofer serves: the root, then every bind mount
// in spec order, with destinations resolved inside the root filesystem.
// options are the server options of t, asking for passthrough.
func (t *tree) options() fsys.Options {
	return fsys.Options{ReadOnly: t.mount.ReadOnly, Cache: t.cache, Passthrough: true,
		UnmappedAsRoot: t.unmappedAsRoot, OverlayLower: t.underlay}
}

func planTrees(s *specs.Spec, bundle, rootfs, overlay string, served []int) ([]*tree, error) {
	serve := map[int]bool{}
	for _, i := range served {
		serve[i] = true
	}
	rootRO := s.Root.Readonly || overlay == config.OverlayMemory
	root := &tree{
		mount:  ipc.GoferMount{SpecIndex: -1, Destination: "/", ReadOnly: rootRO},
		source: rootfs, cache: fsys.CacheShort, jailName: "root",
	}
	if rootRO {
		// The image behind a read-only root does not change under us.
		root.cache = fsys.CacheLong
	}
	// Init stacks its memory overlay on the root exactly then (goferRoot.build).
	root.underlay = overlay == config.OverlayMemory && !s.Root.Readonly
	trees := []*tree{root}
	// Without the memory overlay there is nowhere else to create missing
	// mount points: they go into the image, as runc does.
	writeThrough := overlay != config.OverlayMemory || s.Root.Readonly
	var earlier []string
	for i, m := range s.Mounts {
		// A mount point under an earlier mount (/dev/pts under /dev) lives
		// in that mount, which init makes: not in the image.
		inImage := writeThrough && !underAny(m.Destination, earlier)
		earlier = append(earlier, m.Destination)
		if !spec.IsBind(m) || !serve[i] {
			if inImage {
				if err := ensureDest(rootfs, m.Destination, bindOfNonDir(m, bundle)); err != nil {
					return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
				}
			}
			continue
		}
		t, err := planBind(i, m, rootfs, bundle, inImage)
		if errors.Is(err, errOptionalGone) {
			continue // init leaves it out too
		}
		if err != nil {
			return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
		}
		trees = append(trees, t)
	}
	// The host's own "/" under the memory overlay (`moat do`) is mostly
	// owned by ids a rootless namespace does not map: shown as the
	// overflow id, the overlay could copy none of it up.
	if filepath.Clean(rootfs) == "/" && rootRO && !s.Root.Readonly && !procutil.InitialUserNS() {
		for _, t := range trees {
			t.unmappedAsRoot = t.mount.ReadOnly
		}
	}
	if writeThrough && s.Process != nil && s.Process.Cwd != "" && !underAny(s.Process.Cwd, earlier) {
		if err := ensureDest(rootfs, s.Process.Cwd, false); err != nil {
			return nil, fmt.Errorf("process.cwd: %w", err)
		}
	}
	return trees, nil
}

// bindOfNonDir reports whether m binds something other than a directory
// (its mount point must then be a file).
func bindOfNonDir(m specs.Mount, bundle string) bool {
	if !spec.IsBind(m) {
		return false
	}
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	st, err := os.Stat(src)
	return err == nil && !st.IsDir()
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

// planBind resolves one bind mount. The destination is resolved inside
// the root filesystem as the container will see it; when the root is
// written through (no overlay), a missing destination is created in the
// image as runc does, otherwise init creates it in the overlay.
// errOptionalGone: an optional bind mount's source is gone (not served).
var errOptionalGone = errors.New("optional bind source is gone")

func planBind(i int, m specs.Mount, rootfs, bundle string, createDest bool) (*tree, error) {
	src := m.Source
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	mo, err := spec.ParseMountOptions(m.Options)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(src); err != nil {
		if mo.Optional && errors.Is(err, os.ErrNotExist) {
			return nil, errOptionalGone
		}
		return nil, fmt.Errorf("bind source: %w", err)
	}
	dest, err := securejoin.SecureJoin(rootfs, m.Destination)
	if err != nil {
		return nil, fmt.Errorf("resolve destination: %w", err)
	}
	rel, err := filepath.Rel(rootfs, dest)
	if err != nil {
		return nil, err
	}
	t := &tree{
		mount: ipc.GoferMount{
			SpecIndex: i, Destination: filepath.Join("/", rel),
			ReadOnly: mo.Flags&unix.MS_RDONLY != 0 || mo.RecAttrSet&unix.MOUNT_ATTR_RDONLY != 0,
		},
		source: src, cache: fsys.CacheShort, jailName: "m" + strconv.Itoa(i),
	}
	if createDest {
		if err := ensureDest(rootfs, t.mount.Destination, false); err != nil {
			return nil, err
		}
	}
	return t, nil
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
// pivots into it and returns an open directory per tree.
// Precondition: the gofer runs in its own mount namespace.
func buildJail(at string, trees []*tree) ([]*os.File, error) {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return nil, fmt.Errorf("isolate mounts: %w", err)
	}
	// Each source (with its submounts) is cloned into a detached mount
	// before the jail exists: a recursive bind made afterwards would take
	// the jail along when it lies inside a source (the root's always does).
	var srcs []*os.File
	defer func() {
		for _, f := range srcs {
			f.Close()
		}
	}()
	for _, t := range trees {
		f, err := cloneTree(t)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, f)
	}
	// The jail covers the root filesystem's path: only in this mount
	// namespace, and nothing is created on the host.
	jail := spec.CoverDir(at)
	if err := unix.Mount("moat-gofer", jail, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64k"); err != nil {
		return nil, fmt.Errorf("jail tmpfs: %w", err)
	}
	for i, t := range trees {
		if err := bindIntoJail(jail, t, srcs[i]); err != nil {
			return nil, err
		}
	}
	procutil.Trace("gofer", "trees attached")
	dirs, err := openTrees(jail, trees)
	if err != nil {
		return nil, err
	}
	if err := pivotInto(jail); err != nil {
		closeAll(dirs)
		return nil, err
	}
	return dirs, nil
}

// cloneTree makes a detached copy of a tree's source mount (recursive),
// nodev and nosuid (no device node swapped in on the host can ever be
// opened through the gofer), and read-only when the tree is: the server
// refuses writes to a read-only tree itself, and so does the kernel.
func cloneTree(t *tree) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, t.source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", t.source, err)
	}
	f := os.NewFile(uintptr(fd), t.source)
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

// pivotInto makes jail the root and detaches everything else; afterwards
// no /proc, /dev or host path is reachable.
func pivotInto(jail string) error {
	if err := unix.Chdir(jail); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into the jail: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's tree: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	// The jail's own directory holds nothing the gofer may change.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("make the jail read-only: %w", err)
	}
	return nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
