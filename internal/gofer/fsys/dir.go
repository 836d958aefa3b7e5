package fsys

import (
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const dirBufSize = 8 << 10

var dirBufs = sync.Pool{New: func() any { b := make([]byte, dirBufSize); return &b }}

// dirStream reads a host directory for the kernel. Offsets are the host's
// d_off cookies, so a fresh descriptor can resume where another stopped.
type dirStream struct {
	fd   int
	buf  []byte
	data []byte // entries read from the host and not yet sent
	pos  uint64 // d_off of the last entry sent: where the host stream is
	eof  bool
}

// seek positions the stream at the kernel's offset.
func (d *dirStream) seek(off uint64) error {
	if off == d.pos {
		return nil
	}
	if _, err := unix.Seek(d.fd, int64(off), unix.SEEK_SET); err != nil {
		return err
	}
	d.data, d.eof, d.pos = nil, false, off
	return nil
}

// OpenDir opens a directory handle, for tests (openAlways) only: otherwise
// it answers ENOSYS, after which the kernel sends no OPENDIR/RELEASEDIR and
// caches listings itself (see the Cache constants).
func (fs *fileSystem) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if fs.noOpenDir {
		return fuse.ENOSYS
	}
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if n.mnt != nil {
		return fuse.OK // fh 0: an empty listing
	}
	if !n.isDir() {
		return fuse.ENOTDIR
	}
	fd, err := fs.reopen(n, unix.O_RDONLY)
	if err != nil {
		return status(err)
	}
	d := &dirStream{fd: fd, buf: make([]byte, dirBufSize)}
	out.Fh = fs.addHandle(&handle{fd: fd, own: true, n: n, dir: d})
	if fs.opts.Cache == CacheLong {
		out.OpenFlags |= fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// ReadDir lists names.
func (fs *fileSystem) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readDir(in, out, false)
}

// ReadDirPlus lists names with their entries (one kernel reference each).
func (fs *fileSystem) ReadDirPlus(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readDir(in, out, true)
}

func (fs *fileSystem) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if n.mnt != nil {
		return fuse.OK
	}
	if in.Fh != 0 {
		h := fs.getHandle(in.Fh)
		if h == nil || h.dir == nil {
			return fuse.EBADF
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return fs.fillDir(h.dir, in.Offset, out, plus, n)
	}
	// No handle (NO_OPENDIR): a descriptor per request. With CacheLong the
	// request after the last entries only learns the end: the one before
	// saw it already, and the tree does not change, so it is answered
	// without opening anything.
	long := fs.opts.Cache == CacheLong
	if long && n.takeEOF(in.Offset) {
		return fuse.OK
	}
	fd, err := fs.reopen(n, unix.O_RDONLY)
	if err != nil {
		return status(err)
	}
	defer unix.Close(fd)
	bp := dirBufs.Get().(*[]byte)
	defer dirBufs.Put(bp)
	d := &dirStream{fd: fd, buf: *bp}
	st := fs.fillDir(d, in.Offset, out, plus, n)
	if long && st.Ok() && d.eof && len(d.data) == 0 {
		n.setEOF(d.pos)
	}
	return st
}

// fillDir sends entries from off until the kernel's buffer is full. Once an
// entry holding a node is in the buffer the answer must be OK: the kernel
// counts those references.
func (fs *fileSystem) fillDir(d *dirStream, off uint64, out *fuse.DirEntryList, plus bool, dir *node) fuse.Status {
	if err := d.seek(off); err != nil {
		return status(err)
	}
	added := 0
	for {
		if len(d.data) == 0 {
			if d.eof {
				return fuse.OK
			}
			r, err := unix.Getdents(d.fd, d.buf)
			if err != nil {
				if added > 0 {
					return fuse.OK
				}
				return status(err)
			}
			if r == 0 {
				d.eof = true
				return fuse.OK
			}
			d.data = d.buf[:r]
		}
		var de fuse.DirEntry
		size := de.Parse(d.data)
		if !fs.addDirEntry(out, de, plus, dir) {
			return fuse.OK
		}
		added++
		d.data = d.data[size:]
		d.pos = de.Off
	}
}

// addDirEntry adds one entry, and for READDIRPLUS looks it up (an entry the
// lookup fails for goes out without a node; the kernel then skips it).
func (fs *fileSystem) addDirEntry(out *fuse.DirEntryList, de fuse.DirEntry, plus bool, dir *node) bool {
	dots := de.Name == "." || de.Name == ".."
	if dir == fs.root && de.Name == ".." {
		de.Ino = fs.root.key.ino // the host parent of the root is not ours to show
	}
	if !plus {
		return out.AddDirEntry(de)
	}
	e := out.AddDirLookupEntry(de)
	if e == nil {
		return false
	}
	if dots || checkName(de.Name) != nil {
		return true
	}
	n, st, err := fs.lookup(dir, de.Name)
	if err != nil {
		return true
	}
	fs.fillEntry(e, n, &st)
	out.FixMode(e.Attr.Mode)
	return true
}

// ReleaseDir closes a directory handle.
func (fs *fileSystem) ReleaseDir(in *fuse.ReleaseIn) {
	if h := fs.dropHandle(in.Fh); h != nil {
		fs.closeHandle(h)
	}
}

// FsyncDir syncs a directory.
func (fs *fileSystem) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if h := fs.getHandle(in.Fh); h != nil && h.fd >= 0 {
		return status(unix.Fsync(h.fd))
	}
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if n.mnt != nil {
		return fuse.OK
	}
	fd, err := fs.reopen(n, unix.O_RDONLY)
	if err != nil {
		return status(err)
	}
	defer unix.Close(fd)
	return status(unix.Fsync(fd))
}
