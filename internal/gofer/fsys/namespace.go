package fsys

import (
	"bytes"
	"os"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// modifiable returns the directory in which name is to be created or
// removed, refusing read-only trees, placeholders and bad names.
func (fs *fileSystem) modifiable(dirID uint64, name string) (*node, error) {
	if fs.opts.ReadOnly {
		return nil, unix.EROFS
	}
	p := fs.getNode(dirID)
	if p == nil {
		return nil, unix.ESTALE
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if p.mnt != nil {
		return nil, unix.EROFS
	}
	return p, nil
}

// chownNew gives a new inode (fd) to the caller, with the kernel's group
// rule: the parent's group when the parent (dirfd) is setgid (the host
// kernel already applied it), else the caller's. Precondition: the
// directory's dirMu is held and fd is the inode this request created.
func chownNew(dirfd, fd int, caller fuse.Owner) error {
	var pst, st unix.Stat_t
	if err := unix.Fstat(dirfd, &pst); err != nil {
		return err
	}
	const flags = unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW
	if err := unix.Fstatat(fd, "", &st, flags); err != nil {
		return err
	}
	uid, gid := int(caller.Uid), int(caller.Gid)
	if pst.Mode&unix.S_ISGID != 0 {
		gid = int(pst.Gid)
	}
	if uint32(uid) == st.Uid && uint32(gid) == st.Gid {
		return nil
	}
	return unix.Fchownat(fd, "", uid, gid, flags)
}

// makeEntry runs mk (which creates name in p, whose descriptor it gets)
// under p's namespace lock, chowns the result to the caller and answers
// with its entry (see makeLocked).
func (fs *fileSystem) makeEntry(p *node, name string, kind uint32, caller fuse.Owner, out *fuse.EntryOut,
	rmFlags int, mk func(dirfd int) (int, error)) fuse.Status {
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(p)
	p.dirMu.Lock()
	st, key, err := makeLocked(pfd, name, kind, caller, rmFlags, mk)
	p.dirMu.Unlock()
	if err != nil {
		return status(err)
	}
	fs.fillEntry(out, fs.addNode(p, name, key, &st, nil), &st)
	return fuse.OK
}

// makeLocked creates name, of type kind, in pfd with mk, then hands the
// inode it made to the caller through a descriptor, never by name: a
// process outside the mount (the host, or another container sharing the
// tree) may rename or link another inode over the new name between the two
// calls, and a chown by name would give that inode to the caller. mk
// returns the new inode's descriptor when it has one (O_CREAT|O_EXCL: no
// window at all), else -1, and the name is opened again; what it names
// then must be a fresh inode of the server's own making (adoptable), or
// the request fails with EEXIST and the inode is left alone. If the chown
// fails, the new entry is removed again, if the name is still its.
func makeLocked(pfd int, name string, kind uint32, caller fuse.Owner, rmFlags int, mk func(int) (int, error)) (unix.Stat_t, inoKey, error) {
	// Inode times come from the kernel's coarse clock, up to a tick behind.
	notBefore := time.Now().Add(-birthSlack).UnixNano()
	fd, err := mk(pfd)
	if err != nil {
		return unix.Stat_t{}, inoKey{}, err
	}
	checked := fd >= 0
	if !checked {
		if fd, err = openChild(pfd, name, unix.O_PATH, 0); err != nil {
			return unix.Stat_t{}, inoKey{}, err
		}
	}
	defer unix.Close(fd)
	st, key, _, err := statxAt(fd, "")
	if err != nil {
		return st, key, err
	}
	if !checked && !adoptable(fd, &st, kind, key, notBefore) {
		return unix.Stat_t{}, inoKey{}, unix.EEXIST
	}
	if err := chownNew(pfd, fd, caller); err != nil {
		unlinkIfStill(pfd, name, key, rmFlags)
		return unix.Stat_t{}, inoKey{}, err
	}
	st, key, _, err = statxAt(fd, "")
	return st, key, err
}

// unlinkIfStill removes name from dirfd if it still names the inode key
// (undoing a creation; another inode moved over the name stays).
func unlinkIfStill(dirfd int, name string, key inoKey, flags int) {
	if _, now, _, err := statxAt(dirfd, name); err == nil && now == key {
		unix.Unlinkat(dirfd, name, flags)
	}
}

// birthSlack allows for the coarse clock inode times are taken from.
const birthSlack = 100 * time.Millisecond

// serverUID is the owner of every inode the server creates.
var serverUID = sync.OnceValue(func() uint32 { return uint32(os.Geteuid()) })

// adoptable reports whether fd (with attributes st) can be the inode of type
// kind the server just made: of that type, owned by the server, a single
// link if not a directory (a link to a host file fails), empty if a
// directory (a host directory moved in fails, whatever the file system
// records), and, where the file system records births, born during the
// request (an older inode fails).
func adoptable(fd int, st *unix.Stat_t, kind uint32, key inoKey, notBefore int64) bool {
	if st.Mode&unix.S_IFMT != kind || st.Uid != serverUID() {
		return false
	}
	if kind == unix.S_IFDIR {
		if !emptyDir(fd) {
			return false
		}
	} else if st.Nlink != 1 {
		return false
	}
	return key.btime == 0 || key.btime >= notBefore
}

// emptyDir reports whether the directory fd (O_PATH) has no entries.
func emptyDir(fd int) bool {
	d, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(d)
	var buf [256]byte
	for {
		n, err := unix.Getdents(d, buf[:])
		if err != nil {
			return false
		}
		if n == 0 {
			return true
		}
		for off := 0; off < n; {
			reclen := int(buf[off+16]) | int(buf[off+17])<<8
			name := buf[off+19 : off+reclen]
			if end := bytes.IndexByte(name, 0); end >= 0 {
				name = name[:end]
			}
			if s := string(name); s != "." && s != ".." {
				return false
			}
			off += reclen
		}
	}
}

// Mkdir makes a directory owned by the caller.
func (fs *fileSystem) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	p, err := fs.modifiable(in.NodeId, name)
	if err != nil {
		return status(err)
	}
	mode := in.Mode & 0o7777 &^ (unix.S_ISUID | unix.S_ISGID)
	return fs.makeEntry(p, name, unix.S_IFDIR, in.Caller.Owner, out, unix.AT_REMOVEDIR, func(dirfd int) (int, error) {
		return -1, unix.Mkdirat(dirfd, name, mode)
	})
}

// Mknod makes a FIFO, a socket or an empty regular file; never a device.
func (fs *fileSystem) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	p, err := fs.modifiable(in.NodeId, name)
	if err != nil {
		return status(err)
	}
	kind := in.Mode & unix.S_IFMT
	switch kind {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFREG:
	case unix.S_IFCHR, unix.S_IFBLK:
		return fuse.EPERM
	default:
		return fuse.EINVAL
	}
	mode := kind | in.Mode&0o7777&^(unix.S_ISUID|unix.S_ISGID)
	return fs.makeEntry(p, name, kind, in.Caller.Owner, out, 0, func(dirfd int) (int, error) {
		if kind == unix.S_IFREG {
			// Made and opened at once: nothing to check afterwards.
			return openChild(dirfd, name, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, mode&0o7777)
		}
		return -1, unix.Mknodat(dirfd, name, mode, 0)
	})
}

// Symlink makes a symlink owned by the caller. Its target is data to the
// server, never resolved.
func (fs *fileSystem) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	p, err := fs.modifiable(h.NodeId, name)
	if err != nil {
		return status(err)
	}
	if target == "" || len(target) >= unix.PathMax {
		return fuse.Status(unix.ENAMETOOLONG)
	}
	return fs.makeEntry(p, name, unix.S_IFLNK, h.Caller.Owner, out, 0, func(dirfd int) (int, error) {
		return -1, unix.Symlinkat(target, dirfd, name)
	})
}

// Link makes a new name for an existing inode, through its descriptor
// (linkat AT_EMPTY_PATH: allowed to the descriptor's opener since Linux
// 6.10, or with CAP_DAC_READ_SEARCH), else by its name, checked afterwards.
func (fs *fileSystem) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	p, err := fs.modifiable(in.NodeId, name)
	if err != nil {
		return status(err)
	}
	old := fs.getNode(in.Oldnodeid)
	if old == nil {
		return statusStale
	}
	if old.mnt != nil {
		return fuse.EXDEV
	}
	if old.isDir() {
		return fuse.EPERM
	}
	ofd, _, err := fs.nodeFD(old)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(old)
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(p)
	p.dirMu.Lock()
	err = unix.Linkat(ofd, "", pfd, name, unix.AT_EMPTY_PATH)
	p.dirMu.Unlock()
	if err == unix.ENOENT || err == unix.EPERM {
		err = fs.linkByName(old, p, pfd, name)
	}
	if err != nil {
		return status(err)
	}
	return fs.entryOf(p, pfd, name, out)
}

// linkByName links old's last known name as name in p, and undoes it unless
// the new name is old's inode.
func (fs *fileSystem) linkByName(old, p *node, pfd int, name string) error {
	op, oname := fs.pinParent(old)
	if op == nil {
		return unix.ESTALE
	}
	defer fs.unpin(op)
	opfd, _, err := fs.nodeFD(op)
	if err != nil {
		return err
	}
	defer fs.unpinFD(op)
	unlock := lockDirs(op, p)
	defer unlock()
	if err := unix.Linkat(opfd, oname, pfd, name, 0); err != nil {
		return staleIfGone(err)
	}
	if _, key, _, err := statxAt(pfd, name); err != nil || key != old.key {
		unix.Unlinkat(pfd, name, 0)
		return unix.ESTALE
	}
	return nil
}

// entryOf answers with the entry now named name in p.
func (fs *fileSystem) entryOf(p *node, pfd int, name string, out *fuse.EntryOut) fuse.Status {
	st, key, _, err := statxAt(pfd, name)
	if err != nil {
		return status(staleIfGone(err))
	}
	fs.fillEntry(out, fs.addNode(p, name, key, &st, nil), &st)
	return fuse.OK
}

// Unlink removes a non-directory.
func (fs *fileSystem) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, 0)
}

// Rmdir removes an empty directory.
func (fs *fileSystem) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fs.remove(h.NodeId, name, unix.AT_REMOVEDIR)
}

func (fs *fileSystem) remove(dirID uint64, name string, flags int) fuse.Status {
	p, err := fs.modifiable(dirID, name)
	if err != nil {
		return status(err)
	}
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(p)
	p.dirMu.Lock()
	defer p.dirMu.Unlock()
	fs.keepVictim(pfd, name)
	return status(unix.Unlinkat(pfd, name, flags))
}

// keepVictim keeps a descriptor of the inode called name in dirfd, if the
// kernel knows it, before the server removes or replaces that name: the
// kernel may have looked the name up and still open the inode, as a local
// file system allows. The descriptor lives until the kernel forgets the node
// (promptly, for an unlinked inode). Precondition: the directory's dirMu is
// held.
func (fs *fileSystem) keepVictim(dirfd int, name string) {
	_, key, _, err := statxAt(dirfd, name)
	if err != nil {
		return
	}
	fs.mu.Lock()
	n := fs.inodes[key]
	fs.mu.Unlock()
	if n == nil {
		return
	}
	readable := n.isReg()
	flags := unix.O_PATH
	if readable {
		flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	}
	fd, err := openChild(dirfd, name, flags, 0)
	if err != nil && readable {
		readable = false
		fd, err = openChild(dirfd, name, unix.O_PATH, 0)
	}
	if err != nil {
		return
	}
	if sameInode(fd, n.key) != nil {
		unix.Close(fd)
		return
	}
	fs.keepFD(n, fd, readable, true)
}

// Rename renames, with RENAME_NOREPLACE and RENAME_EXCHANGE;
// RENAME_WHITEOUT (which makes a device node) is refused.
func (fs *fileSystem) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags&^uint32(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		if in.Flags&unix.RENAME_WHITEOUT != 0 {
			return fuse.EPERM
		}
		return fuse.EINVAL
	}
	op, err := fs.modifiable(in.NodeId, oldName)
	if err != nil {
		return fs.renameStatus(err)
	}
	np, err := fs.modifiable(in.Newdir, newName)
	if err != nil {
		return fs.renameStatus(err)
	}
	opfd, _, err := fs.nodeFD(op)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(op)
	npfd, _, err := fs.nodeFD(np)
	if err != nil {
		return status(err)
	}
	defer fs.unpinFD(np)
	unlock := lockDirs(op, np)
	defer unlock()
	if in.Flags&(unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE) == 0 {
		fs.keepVictim(npfd, newName)
	}
	if err := unix.Renameat2(opfd, oldName, npfd, newName, uint(in.Flags)); err != nil {
		return status(err)
	}
	fs.moved(np, npfd, newName)
	if in.Flags&unix.RENAME_EXCHANGE != 0 {
		fs.moved(op, opfd, oldName)
	}
	return fuse.OK
}

// renameStatus answers EXDEV for a rename into or out of a placeholder.
func (fs *fileSystem) renameStatus(err error) fuse.Status {
	if err == unix.EROFS && !fs.opts.ReadOnly {
		return fuse.EXDEV
	}
	return status(err)
}

// lockDirs takes the namespace locks of two directories in node id order.
func lockDirs(a, b *node) func() {
	if a == b {
		a.dirMu.Lock()
		return a.dirMu.Unlock
	}
	if a.id > b.id {
		a, b = b, a
	}
	a.dirMu.Lock()
	b.dirMu.Lock()
	return func() {
		b.dirMu.Unlock()
		a.dirMu.Unlock()
	}
}
