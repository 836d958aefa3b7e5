package fsys

import (
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// xattrOps acts on one inode's extended attributes: through a read
// descriptor (directories, regular files), or by name in the parent
// (symlinks and special files, which the server never opens).
type xattrOps struct {
	viaFD   func(fd int) (int, error)
	viaName func(dirfd int, name string) (int, error)
}

// withXattr runs ops on n: a regular file through its cached read
// descriptor, a directory through a descriptor of its own, anything else
// (and what the server may not open) by name in the parent, under the
// parent's namespace lock, after checking that the name still is n.
func (fs *fileSystem) withXattr(n *node, ops xattrOps) (int, error) {
	switch n.kind {
	case unix.S_IFREG:
		fd, readable, err := fs.nodeFD(n)
		if err != nil {
			return 0, err
		}
		if readable {
			defer fs.unpinFD(n)
			return ops.viaFD(fd)
		}
		fs.unpinFD(n)
	case unix.S_IFDIR:
		fd, err := fs.reopen(n, unix.O_RDONLY)
		if err == nil {
			defer unix.Close(fd)
			return ops.viaFD(fd)
		}
		if err != unix.EACCES || n == fs.root {
			return 0, err
		}
	}
	return fs.xattrByName(n, ops)
}

func (fs *fileSystem) xattrByName(n *node, ops xattrOps) (int, error) {
	p, name := fs.pinParent(n)
	if p == nil {
		return 0, unix.ESTALE
	}
	defer fs.unpin(p)
	pfd, _, err := fs.nodeFD(p)
	if err != nil {
		return 0, err
	}
	defer fs.unpinFD(p)
	p.dirMu.RLock()
	defer p.dirMu.RUnlock()
	_, key, _, err := statxAt(pfd, name)
	if err != nil {
		return 0, staleIfGone(err)
	}
	if key != n.key {
		return 0, unix.ESTALE
	}
	return ops.viaName(pfd, name)
}

// xattrSettable refuses what the container may not change.
func (fs *fileSystem) xattrSettable(n *node, attr string) error {
	if fs.opts.ReadOnly || n.mnt != nil {
		return unix.EROFS
	}
	switch {
	case strings.HasPrefix(attr, "user."):
		return nil
	case strings.HasPrefix(attr, "trusted."), strings.HasPrefix(attr, "security."):
		if fs.opts.AllowPrivilegedXattrs {
			return nil
		}
		return unix.EPERM
	}
	return unix.EOPNOTSUPP
}

// GetXAttr reads one attribute; with an empty buffer it returns the size.
func (fs *fileSystem) GetXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n := fs.getNode(h.NodeId)
	if n == nil {
		return 0, statusStale
	}
	if fs.opts.OverlayLower {
		return 0, fuse.ENOSYS // the kernel asks no more: see Options
	}
	if n.mnt != nil {
		return 0, fuse.ENOATTR
	}
	get := func(buf []byte) (int, error) {
		return fs.withXattr(n, xattrOps{
			viaFD:   func(fd int) (int, error) { return unix.Fgetxattr(fd, attr, buf) },
			viaName: func(d int, name string) (int, error) { return getxattrat(d, name, attr, buf) },
		})
	}
	sz, err := get(dest)
	if err == unix.ERANGE {
		if sz, err = get(nil); err == nil {
			return uint32(sz), fuse.ERANGE
		}
	}
	if err == unix.ENOSYS {
		return 0, fuse.ENOATTR
	}
	return uint32(sz), status(err)
}

// ListXAttr lists attribute names; with an empty buffer it returns the size.
func (fs *fileSystem) ListXAttr(_ <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if fs.opts.OverlayLower {
		return 0, fuse.ENOSYS
	}
	n := fs.getNode(h.NodeId)
	if n == nil {
		return 0, statusStale
	}
	if n.mnt != nil {
		return 0, fuse.OK
	}
	list := func(buf []byte) (int, error) {
		return fs.withXattr(n, xattrOps{
			viaFD:   func(fd int) (int, error) { return unix.Flistxattr(fd, buf) },
			viaName: func(d int, name string) (int, error) { return listxattrat(d, name, buf) },
		})
	}
	sz, err := list(dest)
	if err == unix.ERANGE {
		if sz, err = list(nil); err == nil {
			return uint32(sz), fuse.ERANGE
		}
	}
	if err == unix.ENOSYS {
		return 0, fuse.OK
	}
	return uint32(sz), status(err)
}

// SetXAttr sets an attribute in a namespace the container may change.
func (fs *fileSystem) SetXAttr(_ <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	n := fs.getNode(in.NodeId)
	if n == nil {
		return statusStale
	}
	if err := fs.xattrSettable(n, attr); err != nil {
		return status(err)
	}
	flags := int(in.Flags)
	_, err := fs.withXattr(n, xattrOps{
		viaFD: func(fd int) (int, error) { return 0, unix.Fsetxattr(fd, attr, data, flags) },
		viaName: func(d int, name string) (int, error) {
			return 0, setxattrat(d, name, attr, data, flags)
		},
	})
	if err == unix.ENOSYS {
		return fuse.Status(unix.EOPNOTSUPP)
	}
	return status(err)
}

// RemoveXAttr removes an attribute in a namespace the container may change.
func (fs *fileSystem) RemoveXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	n := fs.getNode(h.NodeId)
	if n == nil {
		return statusStale
	}
	if err := fs.xattrSettable(n, attr); err != nil {
		return status(err)
	}
	_, err := fs.withXattr(n, xattrOps{
		viaFD:   func(fd int) (int, error) { return 0, unix.Fremovexattr(fd, attr) },
		viaName: func(d int, name string) (int, error) { return 0, removexattrat(d, name, attr) },
	})
	if err == unix.ENOSYS {
		return fuse.Status(unix.EOPNOTSUPP)
	}
	return status(err)
}
