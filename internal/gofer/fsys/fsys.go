// Package fsys is the FUSE file server behind `moat gofer`: it serves one
// host directory tree on one already-mounted /dev/fuse connection. The
// container is hostile (root inside, arbitrary requests through the kernel),
// so the server never resolves a path string on the host:
//
//   - a node is an inode the kernel knows, found again by its last known
//     (parent node, name) and identified by dev, inode number and birth
//     time. It holds no descriptor of its own (an image has more inodes than
//     a rootless server may open files); a bounded cache keeps descriptors of
//     recently used nodes (fdcache.go). Every descriptor is opened with
//     openat2 relative to the parent's, one name at a time, with
//     RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_XDEV
//     and O_NOFOLLOW, under the parent's namespace lock (no rename through
//     the mount can interleave), and must be the node's inode (otherwise
//     ESTALE, which makes the kernel look the name up again). Symlinks are
//     returned to the kernel as symlinks and resolved by the client (the
//     container) inside its own root; the server never follows one.
//   - lookups stat the name (statx, AT_SYMLINK_NOFOLLOW) without opening it.
//     Directories are reopened through "." of their own descriptor; regular
//     files are cached O_RDONLY (reads) or reopened by name for writing;
//     anything else is only ever opened O_PATH. (A host process that swaps
//     a device node in under a regular file's name at the wrong instant gets
//     it opened, with O_NONBLOCK, and refused by the inode check; the caller
//     rules even that out by serving trees from nodev mounts.)
//   - names are single components: "", ".", "..", and names holding '/' or
//     NUL are refused with EINVAL.
//   - other mounts below the served root are not crossed (statx mount id, and
//     RESOLVE_NO_XDEV): a mount point shows as an empty, read-only
//     placeholder (a directory, or an empty file for a file mount point)
//     carrying the attributes of the mounted root; its contents are never
//     opened, listed or modified (EROFS, EXDEV for link and rename).
//   - Options.ReadOnly makes every modifying request fail with EROFS in the
//     server. Device nodes are never created (mknod of a char or block device,
//     and RENAME_WHITEOUT, fail with EPERM), S_ISUID and S_ISGID are stripped
//     from every mode the container asks for (create, mkdir, mknod, chmod; a
//     directory made inside a setgid directory still inherits setgid from the
//     host kernel: that bit only selects the group of new entries and grants
//     nothing), and trusted.* / security.* xattrs cannot be set or removed
//     unless Options.AllowPrivilegedXattrs.
//   - new files belong to the caller of the request (FUSE header uid/gid):
//     the server creates them, then chowns the very inode it created, through
//     a descriptor, while it holds the parent directory's namespace lock (no
//     rename through the mount can swap another inode in between). Regular
//     files are made and opened at once (O_CREAT|O_EXCL); for directories,
//     symlinks, FIFOs and sockets an inode swapped in from outside the mount
//     is recognised when it is of another type, not owned by the server,
//     linked elsewhere, a directory with entries, or born before the request
//     (where the file system records births), and is never chowned: the
//     request fails with EEXIST. An empty directory or a symlink of the
//     server's own uid swapped in on a file system without birth times is
//     not told apart. The group follows the
//     kernel's rule: the parent's group when the parent is setgid, else the
//     caller's.
//   - permission checks are the kernel's (the mount must use
//     default_permissions); the server does not repeat them.
//
// Caching follows Options.Cache; see the Cache constants.
package fsys

import (
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
	"golang.org/x/sys/unix"
)

// Cache selects the caching policy of one mount.
type Cache int

const (
	// CacheShort is for trees that may change behind the server's back (read-
	// write bind mounts): entry and attribute timeouts of 1 s, no negative
	// entries, page cache kept across opens only while size, mtime and ctime
	// are unchanged, symlinks not cached. Every open is a round trip. OPENDIR
	// is answered with ENOSYS: the kernel then keeps a directory's listing
	// while its mtime stays the same, checked when a listing starts against
	// attributes at most 1 s old (a git status of 50k files: warm 4.1x ->
	// 2.0x runc, no OPENDIR/RELEASEDIR pair and no re-read per directory).
	CacheShort Cache = iota
	// CacheLong is for a tree nobody changes (the image under a read-only
	// root or an overlay): entries, attributes and negative entries live for
	// an hour, page cache and directory listings are kept (KEEP_CACHE,
	// CACHE_DIR), read-only opens skip FLUSH, symlinks are cached, and the
	// server answers OPENDIR with ENOSYS, after which the kernel opens
	// directories without asking and caches listings by itself. With
	// ReadOnly it answers OPEN with ENOSYS as well: the kernel then opens
	// files without asking, with KEEP_CACHE, so a warm open, read or exec
	// costs no round trip at all (see Serve for what that implies). A change
	// made on the host side is not seen until the kernel drops its cache.
	CacheLong
)

func (c Cache) String() string {
	switch c {
	case CacheShort:
		return "short"
	case CacheLong:
		return "long"
	}
	return "cache(" + strconv.Itoa(int(c)) + ")"
}

// Options configures one served tree.
type Options struct {
	// ReadOnly makes every modifying request fail with EROFS in the server,
	// whatever the mount flags say.
	ReadOnly bool
	// Cache is the caching policy.
	Cache Cache
	// Passthrough asks for FUSE passthrough (the kernel reads and writes the
	// host file directly). It needs CAP_SYS_ADMIN in the initial user
	// namespace; when the kernel refuses it (EPERM in a user namespace) the
	// server falls back silently and says so through Logf. It is not used
	// with CacheLong and ReadOnly: passthrough needs an OPEN round trip per
	// open, and answering no OPEN at all measured faster there (see Cache).
	Passthrough bool
	// UnmappedAsRoot shows files whose owner has no id in the server's user
	// namespace as owned by its root instead of the overflow id: a
	// read-only lower layer of the host's own tree (`moat do` rootless),
	// which the overlay could not copy up otherwise (it cannot chown to
	// the overflow id). The server's host credentials still decide every
	// access.
	UnmappedAsRoot bool
	// AllowPrivilegedXattrs allows setting and removing trusted.* and
	// security.* extended attributes.
	AllowPrivilegedXattrs bool
	// OverlayLower says the tree is the lower layer of an overlay, which
	// asks for one of its own attributes (trusted.overlay.*, or
	// user.overlay.* with userxattr) of every entry it looks up: a GETXATTR
	// round trip per file of a fresh walk. The server then answers the first
	// GETXATTR and LISTXATTR with ENOSYS, after which the kernel sends none
	// and the tree has no extended attributes: the image cannot steer the
	// overlay, and its own attributes (user.*, ACLs, security.capability)
	// are not shown nor copied up. File capabilities lose nothing: the
	// overlay is mounted nosuid, which ignores them (and setuid) anyway.
	OverlayLower bool
	// Logf receives debug messages, including go-fuse's own; nil discards.
	Logf func(format string, args ...any)

	// openMode overrides the OPEN/OPENDIR policy, for tests and benchmarks.
	openMode openMode
	// debug logs every request through Logf, for tests.
	debug bool
	// zeroTTL makes the kernel ask for every entry and attribute, for tests.
	zeroTTL bool
}

type openMode int

const (
	openAuto   openMode = iota // OPENDIR: ENOSYS; OPEN: see noOpenWanted
	openAlways                 // always answer OPEN and OPENDIR
	openNever                  // answer OPEN with ENOSYS when read-only, whatever the cache
)

const (
	longTimeout  = time.Hour
	shortTimeout = time.Second
	maxWrite     = 256 << 10
)

// Serve serves the directory tree rooted at root on the FUSE connection
// fuseFD and returns when the mount goes away (unmount, or the connection is
// aborted). It returns an error only when serving could not start.
//
// Precondition: root is a directory descriptor (any open mode, O_PATH is
// fine) that stays valid during the call; Serve works on its own duplicate.
// fuseFD is a /dev/fuse descriptor on which mount(2) already happened, with
// default_permissions (mandatory: the server does no permission checks) and
// allow_other; Serve serves a duplicate of it, so the caller keeps and closes
// its own (and must not keep it open elsewhere, or a dead server would not
// abort the connection). The process umask should be 0 (the kernel already
// applied the container's umask). Descriptors: up to fdCacheMax cached ones
// per tree, plus one per file the container holds open and one per inode it
// unlinked while the kernel still knows it.
//
// With Cache == CacheLong and ReadOnly the kernel is told not to send OPEN,
// so open(O_RDWR) is not refused at open time (every write, truncate and
// writeback still fails with EROFS, but a MAP_SHARED store is seen by other
// readers of the mount until the page is dropped): mount such a tree with
// MS_RDONLY, which also spares a GETATTR after each read (the kernel drops
// its cached atime after reads on a writable superblock).
func Serve(root *os.File, fuseFD int, opts Options) error {
	fs, err := newFileSystem(root, opts)
	if err != nil {
		return err
	}
	dup, err := unix.FcntlInt(uintptr(fuseFD), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		fs.closeAll()
		return fmt.Errorf("duplicate the FUSE descriptor: %w", err)
	}
	mo := fs.mountOptions()
	srv, err := fuse.NewServer(fs, "/dev/fd/"+strconv.Itoa(dup), mo)
	if err != nil {
		// NewServer owns dup from the start and closes it on failure.
		fs.closeAll()
		return fmt.Errorf("FUSE handshake: %w", err)
	}
	srv.Serve()
	fs.closeAll()
	return nil
}

// PrepareChroot opens what go-fuse opens lazily, so that serving keeps working
// after the caller gives up the host's /dev and /proc (pivot_root, chroot).
// The server itself does not splice, but the splice package opens /dev/null
// the first time a pipe pair is recycled and panics if that fails.
func PrepareChroot() error {
	p, err := splice.Get()
	if err != nil {
		return fmt.Errorf("prepare splice pipes: %w", err)
	}
	splice.Done(p) // draining a returned pair opens /dev/null once
	return nil
}

// fileSystem implements fuse.RawFileSystem for one tree.
type fileSystem struct {
	fuse.RawFileSystem // ENOSYS for what is not implemented below

	opts Options
	logf func(format string, args ...any)

	entryTTL, attrTTL, negTTL time.Duration

	srv *fuse.Server // set by Init, before any other request

	// Decided in Init, read-only afterwards.
	noOpen, noOpenDir bool
	passthrough       bool

	mu     sync.Mutex // guards the node tables and every node's tree fields
	nodes  map[uint64]*node
	inodes map[inoKey]*node
	nextID uint64
	root   *node

	// Mount crossing: the mount id of the root (statx), or 0 when the kernel
	// does not report one; then only a change of st_dev is seen.
	rootMnt uint64
	rootDev uint64

	fdmu             sync.Mutex // the descriptor cache, see fdcache.go
	lruLen           int        // nodes in the LRU: unpinned cached descriptors
	victims          int        // permanent descriptors kept by keepVictim (guarded by fdmu)
	lruHead, lruTail *node

	hmu     sync.Mutex
	handles map[uint64]*handle
	nextFh  uint64
}

func newFileSystem(root *os.File, opts Options) (*fileSystem, error) {
	if opts.Cache != CacheShort && opts.Cache != CacheLong {
		return nil, fmt.Errorf("unknown cache policy %v", opts.Cache)
	}
	fd, err := dupDir(root)
	if err != nil {
		return nil, err
	}
	st, key, mntID, err := statxAt(fd, "")
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat the served root: %w", err)
	}
	fs := &fileSystem{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		opts:          opts,
		logf:          opts.Logf,
		nodes:         make(map[uint64]*node),
		inodes:        make(map[inoKey]*node),
		nextID:        fuse.FUSE_ROOT_ID + 1,
		handles:       make(map[uint64]*handle),
		nextFh:        1,
		rootMnt:       mntID,
		rootDev:       st.Dev,
	}
	if fs.logf == nil {
		fs.logf = func(string, ...any) {}
	}
	fs.entryTTL, fs.attrTTL, fs.negTTL = shortTimeout, shortTimeout, 0
	if opts.Cache == CacheLong {
		fs.entryTTL, fs.attrTTL, fs.negTTL = longTimeout, longTimeout, longTimeout
	}
	if opts.zeroTTL {
		fs.entryTTL, fs.attrTTL, fs.negTTL = 0, 0, 0
	}
	fs.root = newNode(fuse.FUSE_ROOT_ID, key, &st, nil)
	fs.root.nlookup = 1
	fs.root.fd, fs.root.pins = fd, 1 // pinned for good: never evicted
	fs.nodes[fs.root.id] = fs.root
	fs.inodes[fs.root.key] = fs.root
	return fs, nil
}

// dupDir returns an O_PATH descriptor of the directory root refers to.
func dupDir(root *os.File) (int, error) {
	rc, err := root.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("served root: %w", err)
	}
	fd := -1
	var operr error
	err = rc.Control(func(rfd uintptr) {
		fd, operr = unix.Openat(int(rfd), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err == nil {
		err = operr
	}
	if err != nil {
		return -1, fmt.Errorf("open the served root: %w", err)
	}
	return fd, nil
}

func (fs *fileSystem) mountOptions() *fuse.MountOptions {
	mo := &fuse.MountOptions{
		Name:                 "moat",
		FsName:               "moat",
		MaxWrite:             maxWrite,
		MaxBackground:        32,
		DisableSplice:        true,
		EnableSymlinkCaching: fs.opts.Cache == CacheLong,
		ExtraCapabilities:    fuse.CAP_NO_OPENDIR_SUPPORT,
		Logger:               log.New(logWriter{fs.logf}, "", 0),
		Debug:                fs.opts.debug,
		PanicHandler: func(v any) fuse.Status {
			fs.logf("panic in request handler: %v", v)
			return fuse.EIO
		},
	}
	if !fs.wantPassthrough() {
		// Negotiating it also makes the mount count as a stacked file
		// system (s_stack_depth), which leaves less room for overlays.
		mo.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}
	return mo
}

// noOpenWanted says whether the server answers OPEN with ENOSYS.
func (fs *fileSystem) noOpenWanted() bool {
	switch fs.opts.openMode {
	case openAlways:
		return false
	case openNever:
		return fs.opts.ReadOnly
	}
	return fs.opts.ReadOnly && fs.opts.Cache == CacheLong
}

func (fs *fileSystem) wantPassthrough() bool {
	return fs.opts.Passthrough && !fs.noOpenWanted()
}

// UsesPassthrough reports whether a tree served with o may set up FUSE
// passthrough, for which its server must keep CAP_SYS_ADMIN (a read-only
// tree with long caches opens nothing: the kernel sends no OPEN).
func (o Options) UsesPassthrough() bool {
	return (&fileSystem{opts: o}).wantPassthrough()
}

// logWriter sends go-fuse's log lines to Logf.
type logWriter struct{ logf func(string, ...any) }

func (w logWriter) Write(p []byte) (int, error) {
	w.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = logWriter{}

func (fs *fileSystem) String() string { return "moat" }

// Init runs after the FUSE handshake, before any other request.
func (fs *fileSystem) Init(srv *fuse.Server) {
	fs.srv = srv
	fs.noOpen = fs.noOpenWanted()
	fs.noOpenDir = fs.opts.openMode != openAlways
	if fs.wantPassthrough() {
		fs.passthrough = fs.probePassthrough()
	}
	fs.logf("serving: readonly=%v cache=%v passthrough=%v no_open=%v no_opendir=%v",
		fs.opts.ReadOnly, fs.opts.Cache, fs.passthrough, fs.noOpen, fs.noOpenDir)
}

// probePassthrough asks the kernel to register the root directory as a
// backing file: EISDIR means the caller may register regular files, EPERM
// means passthrough is not negotiated or the caller lacks CAP_SYS_ADMIN in
// the initial user namespace.
func (fs *fileSystem) probePassthrough() bool {
	id, errno := fs.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fs.root.fd)})
	if errno == 0 {
		fs.srv.UnregisterBackingFd(id)
		return true
	}
	if errno == unix.EISDIR {
		return true
	}
	fs.logf("passthrough unavailable, serving reads and writes itself: %v", errno)
	return false
}

// OnUnmount runs after the last request.
func (fs *fileSystem) OnUnmount() {}

// closeAll closes every descriptor the server holds. Precondition: no
// request is being served.
func (fs *fileSystem) closeAll() {
	fs.hmu.Lock()
	for fh, h := range fs.handles {
		fs.closeHandle(h)
		delete(fs.handles, fh)
	}
	fs.hmu.Unlock()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	for id, n := range fs.nodes {
		if n.fd >= 0 {
			unix.Close(n.fd)
			n.fd = -1
		}
		delete(fs.nodes, id)
	}
	clear(fs.inodes)
	fs.lruHead, fs.lruTail, fs.lruLen = nil, nil, 0
}

// crossesMount reports whether a stat result is on another mount than the
// served root.
func (fs *fileSystem) crossesMount(mntID, dev uint64) bool {
	if fs.rootMnt != 0 && mntID != 0 {
		return mntID != fs.rootMnt
	}
	return dev != fs.rootDev
}
