package fsys

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const setattrChanges = fuse.FATTR_MODE | fuse.FATTR_UID | fuse.FATTR_GID | fuse.FATTR_SIZE |
	fuse.FATTR_ATIME | fuse.FATTR_MTIME

// Lookup resolves one name in a directory.
func (fs *fileSystem) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent := fs.getNode(h.NodeId)
	if parent == nil {
		return statusStale
	}
	if err := checkName(name); err != nil {
		return status(err)
	}
	n, st, err := fs.lookup(parent, name)
	if err == unix.ENOENT && fs.negTTL > 0 {
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(fs.negTTL)
		return fuse.OK
	}
	if err != nil {
		return status(err)
	}
	fs.fillEntry(out, n, &st)
	return fuse.OK
}

// lookup finds name in parent and counts one kernel reference to the
// result. It stats the name without opening it; a mount point becomes a
// placeholder node. Precondition: checkName(name) == nil.
func (fs *fileSystem) lookup(parent *node, name string) (*node, unix.Stat_t, error) {
	if parent.mnt != nil {
		return nil, unix.Stat_t{}, unix.ENOENT
	}
	pfd, _, err := fs.nodeFD(parent)
	if err != nil {
		return nil, unix.Stat_t{}, err
	}
	defer fs.unpinFD(parent)
	parent.dirMu.RLock()
	defer parent.dirMu.RUnlock()
	st, key, mntID, err := statxAt(pfd, name)
	if err != nil {
		return nil, st, err
	}
	if fs.crossesMount(mntID, st.Dev) {
		snap := st // the mounted root's attributes; nothing else is looked at
		return fs.addNode(parent, name, key, &st, &snap), st, nil
	}
	return fs.addNode(parent, name, key, &st, nil), st, nil
}

// GetAttr returns a node's attributes, from the open file when there is one.
func (fs *fileSystem) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if in.Flags()&fuse.FUSE_GETATTR_FH != 0 && in.Fh() != 0 {
		if h := fs.getHandle(in.Fh()); h != nil && h.fd >= 0 {
			var st unix.Stat_t
			if err := unix.Fstat(h.fd, &st); err != nil {
				return status(err)
			}
			fillAttr(&out.Attr, &st)
			fs.squashOwner(&out.Attr)
			out.SetTimeout(fs.attrTTL)
			return fuse.OK
		}
	}
	if err := fs.stat(n, &out.Attr); err != nil {
		return status(err)
	}
	out.SetTimeout(fs.attrTTL)
	return fuse.OK
}

// SetAttr changes mode, owner, size and times, in that order.
func (fs *fileSystem) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if in.Valid&setattrChanges != 0 && (fs.opts.ReadOnly || n.mnt != nil) {
		return fuse.EROFS
	}
	if err := fs.setattr(n, in); err != nil {
		return status(err)
	}
	if err := fs.stat(n, &out.Attr); err != nil {
		return status(err)
	}
	out.SetTimeout(fs.attrTTL)
	return fuse.OK
}

func (fs *fileSystem) setattr(n *node, in *fuse.SetAttrIn) error {
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		fd, _, err := fs.nodeFD(n)
		if err != nil {
			return err
		}
		err = fs.setattrFD(n, fd, in)
		fs.unpinFD(n)
		if err != nil {
			return err
		}
	}
	if size, ok := in.GetSize(); ok {
		return fs.truncate(n, in, int64(size))
	}
	return nil
}

// setattrFD changes mode, owner and times through n's pinned descriptor
// (O_PATH or O_RDONLY: the *at calls take it with AT_EMPTY_PATH).
func (fs *fileSystem) setattrFD(n *node, fd int, in *fuse.SetAttrIn) error {
	if mode, ok := in.GetMode(); ok {
		if err := fs.chmod(n, fd, mode&^(unix.S_ISUID|unix.S_ISGID)); err != nil {
			return err
		}
	}
	uid, setUID := in.GetUID()
	gid, setGID := in.GetGID()
	if setUID || setGID {
		u, g := -1, -1
		if setUID {
			u = int(uid)
		}
		if setGID {
			g = int(gid)
		}
		if err := unix.Fchownat(fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		ts := []unix.Timespec{
			setattrTime(in.Valid, fuse.FATTR_ATIME, fuse.FATTR_ATIME_NOW, in.Atime, in.Atimensec),
			setattrTime(in.Valid, fuse.FATTR_MTIME, fuse.FATTR_MTIME_NOW, in.Mtime, in.Mtimensec),
		}
		return unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

func setattrTime(valid, set, now uint32, sec uint64, nsec uint32) unix.Timespec {
	switch {
	case valid&set == 0:
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	case valid&now != 0:
		return unix.Timespec{Nsec: unix.UTIME_NOW}
	}
	return unix.Timespec{Sec: int64(sec), Nsec: int64(nsec)}
}

// chmod uses fchmodat2(AT_EMPTY_PATH), which takes an O_PATH descriptor;
// without it (Linux < 6.6) directories and regular files are reopened.
func (fs *fileSystem) chmod(n *node, fd int, mode uint32) error {
	err := unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if err != unix.EOPNOTSUPP || !(n.isDir() || n.isReg()) {
		return err
	}
	rfd, err := fs.reopen(n, unix.O_RDONLY)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	return unix.Fchmod(rfd, mode)
}

// truncate uses the file handle the kernel names when it is writable, and
// otherwise reopens the file for writing.
func (fs *fileSystem) truncate(n *node, in *fuse.SetAttrIn, size int64) error {
	if fh, ok := in.GetFh(); ok && fh != 0 {
		if h := fs.getHandle(fh); h != nil && h.write {
			return unix.Ftruncate(h.fd, size)
		}
	}
	if n.isDir() {
		return unix.EISDIR
	}
	if !n.isReg() {
		return unix.EINVAL
	}
	fd, err := fs.reopen(n, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Ftruncate(fd, size)
}

// Readlink returns a symlink's target; the server never follows it.
func (fs *fileSystem) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n := fs.getNode(h.NodeId)
	if n == nil {
		return nil, statusStale
	}
	if n.kind != unix.S_IFLNK || n.mnt != nil {
		return nil, fuse.EINVAL
	}
	fd, _, err := fs.nodeFD(n)
	if err != nil {
		return nil, status(err)
	}
	defer fs.unpinFD(n)
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		r, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return nil, status(err)
		}
		if r < size {
			return buf[:r], fuse.OK
		}
		if size > unix.PathMax*4 {
			return nil, fuse.Status(unix.ENAMETOOLONG)
		}
	}
}

// StatFs reports the host file system of the node.
func (fs *fileSystem) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	var s unix.Statfs_t
	if err := unix.Fstatfs(fs.root.fd, &s); err != nil { // one file system: no crossing
		return status(err)
	}
	*out = fuse.StatfsOut{
		Blocks:  s.Blocks,
		Bfree:   s.Bfree,
		Bavail:  s.Bavail,
		Files:   s.Files,
		Ffree:   s.Ffree,
		Bsize:   uint32(s.Bsize),
		NameLen: uint32(s.Namelen),
		Frsize:  uint32(s.Frsize),
	}
	return fuse.OK
}
