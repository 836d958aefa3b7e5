package fsys

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// inoKey identifies an inode on the host. Mount-point placeholders live in
// their own key space: the root of a bind mount of a directory of the same
// file system has the dev/ino of that directory.
type inoKey struct {
	dev, ino uint64
	btime    int64 // birth time in ns, 0 if the file system has none
	mnt      bool
}

// node is one inode the kernel knows by a node id. It is found again on the
// host by its last known (parent, name) and checked against key.
//
// Lock order: n.omu, then a directory's dirMu (two of them: in node id
// order), then fileSystem.mu, then fileSystem.fdmu; fileSystem.hmu before
// fdmu. A request pins every descriptor it needs before it takes a dirMu
// (pinning may reopen a directory, which takes its parent's dirMu).
type node struct {
	id   uint64
	key  inoKey
	kind uint32 // S_IFMT bits

	// mnt is the attribute snapshot of a mount-point placeholder, nil for
	// every other node.
	mnt *unix.Stat_t

	// Guarded by fileSystem.mu.
	nlookup uint64 // the kernel's references
	refs    int    // children naming this node as parent, and pins
	parent  *node  // last directory the inode was seen in
	name    string // its name there

	// Guarded by fileSystem.fdmu: the descriptor cache (fdcache.go).
	fd         int
	readable   bool
	pins       int
	dead       bool
	permanent  bool // pinned until forgotten (O_TMPFILE inodes, victims)
	victim     bool // permanent through keepVictim (counted in fs.victims)
	inLRU      bool
	prev, next *node

	// dirMu orders what happens to the names in this directory: namespace
	// changes (create, link, unlink, rename) take it for writing; lookups,
	// reopening a child by name and by-name xattr calls take it for reading.
	// So no rename through the mount can swap an inode in while the server
	// chowns or reopens one, and a lookup never registers an inode that a
	// concurrent unlink through the mount has already passed by.
	dirMu sync.RWMutex

	// Guarded by omu.
	omu     sync.Mutex
	backing int32     // passthrough backing id, 0 if none
	seen    *statSnap // CacheShort: attributes at the previous open
	eofAt   uint64    // CacheLong directory: its listing ended at this offset
	eofSet  bool      // eofAt is set (once: takeEOF clears it)
}

// setEOF records that n's listing ends at off.
func (n *node) setEOF(off uint64) {
	n.omu.Lock()
	n.eofAt, n.eofSet = off, true
	n.omu.Unlock()
}

// takeEOF reports, once, whether n's listing is known to end at off.
func (n *node) takeEOF(off uint64) bool {
	n.omu.Lock()
	defer n.omu.Unlock()
	hit := n.eofSet && n.eofAt == off
	n.eofSet = false
	return hit
}

// statSnap is what decides whether cached pages of a file are still valid.
type statSnap struct {
	size         int64
	mtime, ctime unix.Timespec
}

func snapOf(st *unix.Stat_t) statSnap {
	return statSnap{size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

func newNode(id uint64, key inoKey, st *unix.Stat_t, mnt *unix.Stat_t) *node {
	return &node{
		id:   id,
		fd:   -1,
		key:  key,
		kind: st.Mode & unix.S_IFMT,
		mnt:  mnt,
	}
}

func (n *node) isDir() bool { return n.kind == unix.S_IFDIR }
func (n *node) isReg() bool { return n.kind == unix.S_IFREG }

// getNode returns the node the kernel calls id, or nil.
func (fs *fileSystem) getNode(id uint64) *node {
	fs.mu.Lock()
	n := fs.nodes[id]
	fs.mu.Unlock()
	return n
}

// addNode records one more kernel reference to the inode key names (st its
// attributes, mnt the snapshot of a placeholder), seen as name in parent (nil
// for an unnamed O_TMPFILE inode), and returns its node.
func (fs *fileSystem) addNode(parent *node, name string, key inoKey, st *unix.Stat_t, mnt *unix.Stat_t) *node {
	key.mnt = mnt != nil
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.inodes[key]
	if n == nil || n.kind != st.Mode&unix.S_IFMT {
		if n != nil {
			delete(fs.inodes, key) // the number was reused: the old node is stale
		}
		n = newNode(fs.nextID, key, st, mnt)
		fs.nextID++
		fs.nodes[n.id] = n
		fs.inodes[key] = n
	}
	n.nlookup++
	fs.setParentLocked(n, parent, name)
	return n
}

// setParentLocked records that n is called name in parent. Precondition:
// fs.mu is held.
func (fs *fileSystem) setParentLocked(n, parent *node, name string) {
	if n == fs.root || parent == nil {
		return // the root, or an O_TMPFILE inode, which has no name yet
	}
	old := n.parent
	if old != parent {
		parent.refs++
		n.parent = parent
	}
	n.name = name
	if old != nil && old != parent {
		old.refs--
		fs.maybeFreeLocked(old)
	}
}

// moved records that the inode now named name in dir (whose descriptor is
// dirfd) is known under that name; it asks the host rather than trusting the
// server's view, since the host may have raced. Precondition: dir.dirMu is
// held.
func (fs *fileSystem) moved(dir *node, dirfd int, name string) {
	_, key, _, err := statxAt(dirfd, name)
	if err != nil {
		return
	}
	fs.mu.Lock()
	if n := fs.inodes[key]; n != nil {
		fs.setParentLocked(n, dir, name)
	}
	fs.mu.Unlock()
}

// Forget drops nlookup kernel references to a node.
func (fs *fileSystem) Forget(id, nlookup uint64) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := fs.nodes[id]
	if n == nil || n == fs.root {
		return
	}
	n.nlookup -= min(nlookup, n.nlookup)
	fs.maybeFreeLocked(n)
}

// maybeFreeLocked frees n, and then its parents, once nothing refers to
// them. Precondition: fs.mu is held.
func (fs *fileSystem) maybeFreeLocked(n *node) {
	for n != nil && n != fs.root && n.nlookup == 0 && n.refs == 0 {
		delete(fs.nodes, n.id)
		if fs.inodes[n.key] == n {
			delete(fs.inodes, n.key)
		}
		fs.releaseBacking(n)
		fs.dropFD(n)
		p := n.parent
		n.parent = nil
		if p == nil {
			return
		}
		p.refs--
		n = p
	}
}

// pinParent returns n's parent and n's name in it, pinned so that the
// parent node stays until unpin; nil if n has none.
func (fs *fileSystem) pinParent(n *node) (*node, string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	p := n.parent
	if p == nil {
		return nil, ""
	}
	p.refs++
	return p, n.name
}

// stillNamed reports whether n is still known as name in p.
func (fs *fileSystem) stillNamed(n, p *node, name string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return n.parent == p && n.name == name
}

func (fs *fileSystem) unpin(p *node) {
	fs.mu.Lock()
	p.refs--
	fs.maybeFreeLocked(p)
	fs.mu.Unlock()
}

// fillAttr converts a host stat to FUSE attributes.
func fillAttr(a *fuse.Attr, st *unix.Stat_t) {
	*a = fuse.Attr{
		Ino:       st.Ino,
		Size:      uint64(st.Size),
		Blocks:    uint64(st.Blocks),
		Atime:     uint64(st.Atim.Sec),
		Atimensec: uint32(st.Atim.Nsec),
		Mtime:     uint64(st.Mtim.Sec),
		Mtimensec: uint32(st.Mtim.Nsec),
		Ctime:     uint64(st.Ctim.Sec),
		Ctimensec: uint32(st.Ctim.Nsec),
		Mode:      st.Mode,
		Nlink:     uint32(st.Nlink),
		Owner:     fuse.Owner{Uid: st.Uid, Gid: st.Gid},
		Rdev:      uint32(st.Rdev),
		Blksize:   uint32(st.Blksize),
	}
}

// placeholderAttr is what a mount point looks like: the mounted root's
// owner, mode and times, and nothing inside.
func placeholderAttr(a *fuse.Attr, mnt *unix.Stat_t) {
	fillAttr(a, mnt)
	a.Size, a.Blocks, a.Rdev = 0, 0, 0
	a.Nlink = 1
	if mnt.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.Nlink = 2
	}
}

// stat returns n's current attributes: from its cached descriptor, else by
// name in its parent (not opening it), checked to still be n's inode.
func (fs *fileSystem) stat(n *node, a *fuse.Attr) error {
	err := fs.statHost(n, a)
	if err == nil {
		fs.squashOwner(a)
	}
	return err
}

// squashOwner shows an owner without an id in the server's user namespace
// (the kernel's overflow id) as that namespace's root, with
// Options.UnmappedAsRoot. Only what the kernel inside believes changes:
// every access still goes through the server's own host credentials.
func (fs *fileSystem) squashOwner(a *fuse.Attr) {
	if !fs.opts.UnmappedAsRoot {
		return
	}
	if a.Uid == overflowUID {
		a.Uid = 0
	}
	if a.Gid == overflowGID {
		a.Gid = 0
	}
}

// overflowUID and overflowGID are what stat reports for an id without a
// mapping: the kernel's defaults (/proc/sys/kernel/overflow{u,g}id, which
// the jailed server cannot read; hosts that change them are rare).
const overflowUID, overflowGID = 65534, 65534

// statHost is stat without squashOwner.
func (fs *fileSystem) statHost(n *node, a *fuse.Attr) error {
	if n.mnt != nil {
		placeholderAttr(a, n.mnt)
		return nil
	}
	var st unix.Stat_t
	if fd, _, ok := fs.pinCached(n); ok {
		err := unix.Fstat(fd, &st)
		fs.unpinFD(n)
		if err != nil {
			return err
		}
		fillAttr(a, &st)
		return nil
	}
	p, name := fs.pinParent(n)
	if p == nil {
		return fs.statOpen(n, a)
	}
	defer fs.unpin(p)
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return err
	}
	st, key, _, err := statxAt(pfd, name)
	fs.unpinFD(p)
	key.mnt = false
	if err == nil && key != n.key {
		err = unix.ESTALE
	}
	if err = staleIfGone(err); err == unix.ESTALE {
		return fs.statOpen(n, a)
	}
	if err != nil {
		return err
	}
	fillAttr(a, &st)
	return nil
}

// statOpen stats n through one of its open handles: a file unlinked or
// replaced while open (fstat on it sends no handle).
func (fs *fileSystem) statOpen(n *node, a *fuse.Attr) error {
	fs.hmu.Lock()
	defer fs.hmu.Unlock()
	for _, h := range fs.handles {
		if h.n == n && h.fd >= 0 {
			var st unix.Stat_t
			if err := unix.Fstat(h.fd, &st); err != nil {
				return err
			}
			fillAttr(a, &st)
			return nil
		}
	}
	return unix.ESTALE
}

func (fs *fileSystem) fillEntry(out *fuse.EntryOut, n *node, st *unix.Stat_t) {
	out.NodeId = n.id
	out.Generation = 0
	if n.mnt != nil {
		placeholderAttr(&out.Attr, n.mnt)
	} else {
		fillAttr(&out.Attr, st)
	}
	fs.squashOwner(&out.Attr)
	out.SetEntryTimeout(fs.entryTTL)
	out.SetAttrTimeout(fs.attrTTL)
}
