package fsys

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// handle is an open file or directory. A read-only file handle shares the
// node's cached descriptor, pinned until RELEASE; others own theirs.
type handle struct {
	fd    int
	own   bool
	n     *node
	write bool

	mu  sync.Mutex // guards dir
	dir *dirStream
}

func (fs *fileSystem) closeHandle(h *handle) {
	if h.own {
		unix.Close(h.fd)
	} else {
		fs.unpinFD(h.n)
	}
	h.fd = -1
}

func (fs *fileSystem) addHandle(h *handle) uint64 {
	fs.hmu.Lock()
	defer fs.hmu.Unlock()
	fh := fs.nextFh
	fs.nextFh++
	fs.handles[fh] = h
	return fh
}

func (fs *fileSystem) getHandle(fh uint64) *handle {
	fs.hmu.Lock()
	defer fs.hmu.Unlock()
	return fs.handles[fh]
}

func (fs *fileSystem) dropHandle(fh uint64) *handle {
	fs.hmu.Lock()
	defer fs.hmu.Unlock()
	h := fs.handles[fh]
	delete(fs.handles, fh)
	return h
}

// hostFlags keeps the open flags that mean something on the host side.
// O_DIRECT is dropped: the kernel already bypasses its page cache for the
// caller, and the server's buffers need not be aligned.
func hostFlags(flags uint32) int {
	keep := uint32(unix.O_ACCMODE | unix.O_APPEND | unix.O_SYNC | unix.O_DSYNC)
	return int(flags & keep)
}

func isWrite(flags uint32) bool {
	return flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_TRUNC != 0
}

// Open opens a regular file.
func (fs *fileSystem) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if fs.noOpen {
		return fuse.ENOSYS // the kernel stops sending OPEN for this mount
	}
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	write := isWrite(in.Flags)
	if write && (fs.opts.ReadOnly || n.mnt != nil) {
		return fuse.EROFS
	}
	if n.mnt != nil {
		return fuse.OK // an empty placeholder file: fh 0 reads nothing
	}
	if !n.isReg() {
		return fuse.EINVAL
	}
	h := &handle{n: n, write: write, own: write}
	var err error
	if write {
		h.fd, err = fs.reopen(n, hostFlags(in.Flags))
	} else {
		var readable bool
		if h.fd, readable, err = fs.nodeFD(n); err == nil && !readable {
			fs.unpinFD(n)
			err = unix.EACCES
		}
		out.OpenFlags |= fuse.FOPEN_NOFLUSH
	}
	if err != nil {
		return status(err)
	}
	out.Fh = fs.addHandle(h)
	fs.openFlags(n, h.fd, out)
	return fuse.OK
}

// openFlags sets the caching and passthrough flags of an open file.
func (fs *fileSystem) openFlags(n *node, fd int, out *fuse.OpenOut) {
	if fs.passthrough {
		if id := fs.backingID(n, fd); id != 0 {
			out.BackingID = id
			out.OpenFlags |= fuse.FOPEN_PASSTHROUGH
			return
		}
	}
	if fs.opts.Cache == CacheLong {
		out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return
	}
	snap := snapOf(&st)
	n.omu.Lock()
	if n.seen != nil && *n.seen == snap {
		out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
	}
	n.seen = &snap
	n.omu.Unlock()
}

// backingID registers n's inode (fd is open on it) as the backing file of
// its FUSE inode, once per node: the kernel allows one backing file per
// inode, and reopens the backing path itself with the opener's flags. 0
// means no passthrough for this file.
func (fs *fileSystem) backingID(n *node, fd int) int32 {
	n.omu.Lock()
	defer n.omu.Unlock()
	if n.backing != 0 {
		return n.backing
	}
	id, errno := fs.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		fs.logf("passthrough: register backing file: %v", errno)
		return 0
	}
	n.backing = id
	return id
}

// releaseBacking drops n's backing id. Precondition: the kernel forgot n.
func (fs *fileSystem) releaseBacking(n *node) {
	if n.backing != 0 && fs.srv != nil {
		fs.srv.UnregisterBackingFd(n.backing)
		n.backing = 0
	}
}

// Create creates and opens a regular file owned by the caller.
func (fs *fileSystem) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	p, err := fs.modifiable(in.NodeId, name)
	if err != nil {
		return status(err)
	}
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(p)
	mode := in.Mode &^ (unix.S_IFMT | unix.S_ISUID | unix.S_ISGID)
	p.dirMu.Lock()
	fd, err := createFile(pfd, name, hostFlags(in.Flags), mode, in.Flags&unix.O_EXCL != 0)
	if err == nil {
		if err = chownNew(pfd, fd, in.Caller.Owner); err != nil {
			if _, key, _, serr := statxAt(fd, ""); serr == nil {
				unlinkIfStill(pfd, name, key, 0)
			}
			unix.Close(fd)
		}
	}
	p.dirMu.Unlock()
	if err != nil {
		return status(err)
	}
	st, key, _, err := statxAt(fd, "")
	if err != nil {
		unix.Close(fd)
		return status(err)
	}
	n := fs.addNode(p, name, key, &st, nil)
	fs.fillEntry(&out.EntryOut, n, &st)
	write := in.Flags&unix.O_ACCMODE != unix.O_RDONLY
	out.Fh = fs.addHandle(&handle{fd: fd, own: true, n: n, write: write})
	if !write {
		out.OpenFlags |= fuse.FOPEN_NOFLUSH
	}
	fs.openFlags(n, fd, &out.OpenOut)
	return fuse.OK
}

// Tmpfile makes an unnamed file (O_TMPFILE) owned by the caller. There is no
// name to find it again by, so its node keeps a duplicate of the descriptor
// for as long as the kernel knows it; linkat(AT_EMPTY_PATH) through the mount
// names it.
func (fs *fileSystem) Tmpfile(_ <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	if fs.opts.ReadOnly {
		return fuse.EROFS
	}
	p := fs.getNode(in.NodeId)
	if p == nil {
		return statusStale
	}
	if p.mnt != nil {
		return fuse.EROFS
	}
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(p)
	mode := in.Mode &^ (unix.S_IFMT | unix.S_ISUID | unix.S_ISGID)
	// Read-write on the host whatever the caller asked: the node keeps a
	// duplicate as its only way to the inode, and reads through the name
	// linkat gives it need a readable one. The kernel refuses reads on the
	// caller's write-only file itself.
	flags := hostFlags(in.Flags)&^unix.O_ACCMODE | unix.O_RDWR
	fd, err := unix.Openat(pfd, ".", flags|unix.O_TMPFILE|unix.O_CLOEXEC, mode)
	if err != nil {
		return status(err)
	}
	nodeFD := -1
	if err = chownNew(pfd, fd, in.Caller.Owner); err == nil {
		nodeFD, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	}
	st, key, _, err2 := statxAt(fd, "")
	if err == nil {
		err = err2
	}
	if err != nil {
		unix.Close(fd)
		if nodeFD >= 0 {
			unix.Close(nodeFD)
		}
		return status(err)
	}
	n := fs.addNode(nil, "", key, &st, nil)
	fs.keepFD(n, nodeFD, true, false)
	fs.fillEntry(&out.EntryOut, n, &st)
	out.Fh = fs.addHandle(&handle{fd: fd, own: true, n: n, write: in.Flags&unix.O_ACCMODE != unix.O_RDONLY})
	fs.openFlags(n, fd, &out.OpenOut)
	return fuse.OK
}

// createFile creates name in the directory dirfd (always O_EXCL: only a file
// made here is chowned to the caller). The kernel sends CREATE after a
// negative lookup and then skips its own permission check on the open; if
// the name appeared in between (a link or rename from outside this
// connection), opening it here would use the gofer's rights. ESTALE instead
// makes the kernel look the name up again and open it the checked way.
// Precondition: the directory's dirMu is held.
func createFile(dirfd int, name string, flags int, mode uint32, excl bool) (int, error) {
	fd, err := openChild(dirfd, name, flags|unix.O_CREAT|unix.O_EXCL, mode)
	if err == unix.EEXIST && !excl {
		return -1, unix.ESTALE
	}
	return fd, err
}

// Read reads from the handle, or (fh 0, when the kernel sends no OPEN) from
// the node's cached descriptor.
func (fs *fileSystem) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if int(in.Size) < len(buf) {
		buf = buf[:in.Size]
	}
	var r int
	err := fs.withIO(in.NodeId, in.Fh, false, func(fd int) (err error) {
		r, err = unix.Pread(fd, buf, int64(in.Offset))
		return err
	})
	if err == errPlaceholder {
		return fuse.ReadResultData(nil), fuse.OK
	}
	if err != nil {
		return nil, status(err)
	}
	return fuse.ReadResultData(buf[:r]), fuse.OK
}

// Write writes through a writable handle.
func (fs *fileSystem) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if fs.opts.ReadOnly {
		return 0, fuse.EROFS
	}
	var r int
	err := fs.withIO(in.NodeId, in.Fh, true, func(fd int) (err error) {
		r, err = unix.Pwrite(fd, data, int64(in.Offset))
		return err
	})
	if err != nil {
		return 0, status(err)
	}
	return uint32(r), fuse.OK
}

var errPlaceholder = unix.EXDEV

// withIO runs f on the descriptor for I/O on a file handle; fh 0 means the
// node's cached descriptor, pinned meanwhile.
func (fs *fileSystem) withIO(id, fh uint64, write bool, f func(fd int) error) error {
	if fh != 0 {
		h := fs.getHandle(fh)
		if h == nil || h.fd < 0 || (write && !h.write) {
			return unix.EBADF
		}
		return f(h.fd)
	}
	if write {
		return unix.EBADF
	}
	n := fs.getNode(id)
	if n == nil {
		return unix.ESTALE
	}
	if n.mnt != nil {
		return errPlaceholder
	}
	fd, readable, err := fs.nodeFD(n)
	if err != nil {
		return err
	}
	defer fs.unpinFD(n)
	if !readable {
		return unix.EACCES
	}
	return f(fd)
}

// Release closes a file handle.
func (fs *fileSystem) Release(_ <-chan struct{}, in *fuse.ReleaseIn) {
	if h := fs.dropHandle(in.Fh); h != nil {
		fs.closeHandle(h)
	}
}

// Flush is answered with ENOSYS: the kernel then stops sending FLUSH on
// close (there is nothing to flush: writes are synchronous and locks are
// the kernel's).
func (fs *fileSystem) Flush(_ <-chan struct{}, _ *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

// Fsync syncs a file.
func (fs *fileSystem) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	err := fs.withIO(in.NodeId, in.Fh, false, func(fd int) error {
		if in.FsyncFlags&1 != 0 {
			return unix.Fdatasync(fd)
		}
		return unix.Fsync(fd)
	})
	if err == errPlaceholder {
		return fuse.OK
	}
	return status(err)
}

// Fallocate allocates or punches space in a writable file.
func (fs *fileSystem) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if fs.opts.ReadOnly {
		return fuse.EROFS
	}
	return status(fs.withIO(in.NodeId, in.Fh, true, func(fd int) error {
		return unix.Fallocate(fd, in.Mode, int64(in.Offset), int64(in.Length))
	}))
}

// Lseek answers SEEK_DATA and SEEK_HOLE.
func (fs *fileSystem) Lseek(_ <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	err := fs.withIO(in.NodeId, in.Fh, false, func(fd int) error {
		off, err := unix.Seek(fd, int64(in.Offset), int(in.Whence))
		out.Offset = uint64(off)
		return err
	})
	if err == errPlaceholder {
		return fuse.Status(unix.ENXIO)
	}
	return status(err)
}

// CopyFileRange copies between two open files on the host side.
func (fs *fileSystem) CopyFileRange(_ <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if fs.opts.ReadOnly {
		return 0, fuse.EROFS
	}
	var r int
	err := fs.withIO(in.NodeId, in.FhIn, false, func(src int) error {
		return fs.withIO(in.NodeIdOut, in.FhOut, true, func(dst int) (err error) {
			offIn, offOut := int64(in.OffIn), int64(in.OffOut)
			r, err = unix.CopyFileRange(src, &offIn, dst, &offOut, int(min(in.Len, 1<<30)), 0)
			return err
		})
	})
	if err != nil {
		return 0, status(err)
	}
	return uint32(r), fuse.OK
}
