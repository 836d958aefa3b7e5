package fsys

import (
	"golang.org/x/sys/unix"
)

// fdCacheMax bounds the descriptors a tree keeps open for nodes that nothing
// pins. A node the kernel remembers holds no descriptor of its own (an image
// can have hundreds of thousands of entries, more than RLIMIT_NOFILE allows
// a rootless server); it is reopened by name when used.
const fdCacheMax = 1024

// victimsMax bounds the descriptors kept for inodes whose name went away
// (keepVictim): a container unlinking names of linked files could otherwise
// make the gofer hold one per file. Past it, such an inode reopens by name
// (or gets ESTALE), as over a network file system.
const victimsMax = 4096

// The descriptor cache: a node's cached descriptor is O_RDONLY for a regular
// file the server may read, else O_PATH. Fields guarded by fileSystem.fdmu:
// node.fd, node.readable, node.pins, node.prev, node.next. The list runs from
// most to least recently used and holds the unpinned cached nodes.

// nodeFD returns n's descriptor, opening it if it is not cached, and pins it
// until unpinFD(n). readable says whether it can be read from.
// Precondition: the caller holds no namespace lock (dirMu): reopening takes
// the parent's.
func (fs *fileSystem) nodeFD(n *node) (fd int, readable bool, err error) {
	if fd, readable, ok := fs.pinCached(n); ok {
		return fd, readable, nil
	}
	if n.mnt != nil {
		return -1, false, unix.EXDEV
	}
	fd, readable, err = fs.openForCache(n)
	if err == unix.EMFILE || err == unix.ENFILE {
		fs.shrinkCache()
		fd, readable, err = fs.openForCache(n)
	}
	if err == unix.ESTALE {
		// The name moved on, but a request that removed or replaced it
		// through the mount may have kept the inode's descriptor meanwhile
		// (keepVictim, under the directory's write lock).
		if fd, readable, ok := fs.pinCached(n); ok {
			return fd, readable, nil
		}
	}
	if err != nil {
		return -1, false, err
	}
	return fs.install(n, fd, readable)
}

func (fs *fileSystem) pinCached(n *node) (int, bool, bool) {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	if n.fd < 0 {
		return -1, false, false
	}
	if n.pins == 0 {
		fs.lruRemove(n)
	}
	n.pins++
	return n.fd, n.readable, true
}

// install caches fd as n's descriptor, pinned once, unless another request
// cached one meanwhile (then fd is closed and that one is pinned).
func (fs *fileSystem) install(n *node, fd int, readable bool) (int, bool, error) {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	if n.fd >= 0 {
		unix.Close(fd)
		if n.pins == 0 {
			fs.lruRemove(n)
		}
		n.pins++
		return n.fd, n.readable, nil
	}
	n.fd, n.readable, n.pins = fd, readable, 1
	return fd, readable, nil
}

// unpinFD ends one use of n's descriptor.
func (fs *fileSystem) unpinFD(n *node) {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	n.pins--
	if n.pins == 0 && n.fd >= 0 {
		if n.dead {
			fs.closeFDLocked(n)
			return
		}
		fs.lruPush(n)
		fs.evictLocked()
	}
}

// evictLocked closes the least recently used unpinned descriptors beyond
// the bound; pinned and permanent ones do not count (they are not the
// cache's to close). Precondition: fs.fdmu is held.
func (fs *fileSystem) evictLocked() {
	for fs.lruLen > fdCacheMax {
		fs.closeFDLocked(fs.lruTail)
	}
}

// shrinkCache closes every unpinned cached descriptor: the process ran out.
func (fs *fileSystem) shrinkCache() {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	for fs.lruTail != nil {
		fs.closeFDLocked(fs.lruTail)
	}
}

// closeFDLocked closes n's cached descriptor. Precondition: fs.fdmu is held
// and n is not pinned.
func (fs *fileSystem) closeFDLocked(n *node) {
	if n.fd < 0 {
		return
	}
	fs.lruRemove(n)
	unix.Close(n.fd)
	n.fd = -1
}

// dropFD closes a forgotten node's descriptor now, or when its last user
// unpins it.
func (fs *fileSystem) dropFD(n *node) {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	n.dead = true
	if n.permanent {
		n.permanent = false
		n.pins--
		if n.victim {
			n.victim = false
			fs.victims--
		}
	}
	if n.pins == 0 {
		fs.closeFDLocked(n)
	}
}

// keepFD makes n keep a descriptor until the kernel forgets it: for an
// inode that has, or is about to have, no name to be reopened by. fd is
// used unless n has one cached already. A victim (keepVictim) is kept only
// while fewer than victimsMax are.
func (fs *fileSystem) keepFD(n *node, fd int, readable, victim bool) {
	fs.fdmu.Lock()
	defer fs.fdmu.Unlock()
	if n.dead || n.permanent || (victim && fs.victims >= victimsMax) {
		unix.Close(fd)
		return
	}
	if victim {
		n.victim = true
		fs.victims++
	}
	if n.fd >= 0 {
		unix.Close(fd)
		if n.pins == 0 {
			fs.lruRemove(n)
		}
	} else {
		n.fd, n.readable = fd, readable
	}
	n.pins++
	n.permanent = true
}

func (fs *fileSystem) lruPush(n *node) {
	n.prev, n.next = nil, fs.lruHead
	if fs.lruHead != nil {
		fs.lruHead.prev = n
	}
	fs.lruHead = n
	if fs.lruTail == nil {
		fs.lruTail = n
	}
	n.inLRU = true
	fs.lruLen++
}

func (fs *fileSystem) lruRemove(n *node) {
	if !n.inLRU {
		return
	}
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		fs.lruHead = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		fs.lruTail = n.prev
	}
	n.prev, n.next, n.inLRU = nil, nil, false
	fs.lruLen--
}

// openForCache opens the descriptor to cache for n: the directory itself
// (O_PATH), a regular file for reading (O_RDONLY, or O_PATH when the server
// may not read it), anything else O_PATH (never opened for real: no device
// is ever opened through the cache).
func (fs *fileSystem) openForCache(n *node) (int, bool, error) {
	switch n.kind {
	case unix.S_IFDIR:
		fd, err := fs.openByName(n, unix.O_PATH|unix.O_DIRECTORY)
		return fd, false, err
	case unix.S_IFREG:
		fd, err := fs.openByName(n, unix.O_RDONLY)
		if err == nil {
			return fd, true, nil
		}
		if err != unix.EACCES && err != unix.EPERM {
			return -1, false, err
		}
	}
	fd, err := fs.openByName(n, unix.O_PATH)
	return fd, false, err
}

// openByName opens n by its last known name in its parent with flags, under
// the parent's namespace lock (no rename through the mount can interleave),
// without following symlinks or crossing mounts, and refuses anything that
// is not n's inode (ESTALE: the kernel then looks the name up again).
func (fs *fileSystem) openByName(n *node, flags int) (int, error) {
	for range 4 {
		p, name := fs.pinParent(n)
		if p == nil {
			return -1, unix.ESTALE
		}
		pfd, _, err := fs.nodeFD(p)
		if err != nil {
			fs.unpin(p)
			return -1, err
		}
		fd, err, retry := fs.openIn(n, p, pfd, name, flags)
		fs.unpinFD(p)
		fs.unpin(p)
		if !retry {
			return fd, err
		}
	}
	return -1, unix.ESTALE
}

func (fs *fileSystem) openIn(n, p *node, pfd int, name string, flags int) (fd int, err error, retry bool) {
	p.dirMu.RLock()
	defer p.dirMu.RUnlock()
	if !fs.stillNamed(n, p, name) {
		return -1, nil, true // renamed through the mount meanwhile
	}
	if flags&unix.O_PATH == 0 {
		// A FIFO swapped in on the host must not block the server.
		flags |= unix.O_NONBLOCK | unix.O_NOCTTY
	}
	fd, err = openChild(pfd, name, flags, 0)
	if err == unix.EXDEV {
		return -1, unix.EXDEV, false // a mount appeared on the name
	}
	if err != nil {
		return -1, staleIfGone(err), false
	}
	if err := sameInode(fd, n.key); err != nil {
		unix.Close(fd)
		return -1, err, false
	}
	return fd, nil, false
}

// reopen opens n's inode anew for I/O with flags: a directory through "."
// of its descriptor, a regular file by name. Other kinds are never opened.
func (fs *fileSystem) reopen(n *node, flags int) (int, error) {
	if n.mnt != nil {
		return -1, unix.EXDEV
	}
	switch n.kind {
	case unix.S_IFDIR:
		fd, _, err := fs.nodeFD(n)
		if err != nil {
			return -1, err
		}
		defer fs.unpinFD(n)
		return unix.Openat(fd, ".", flags|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	case unix.S_IFREG:
		return fs.openByName(n, flags)
	}
	return -1, unix.EINVAL
}
