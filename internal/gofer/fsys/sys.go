package fsys

import (
	"errors"
	"strings"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// resolveChild confines openat2 to one name inside the directory: no
// symlink (not even the last component, with O_NOFOLLOW), no magic link, no
// "..", no other mount.
const resolveChild = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS |
	unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// checkName refuses anything but a single path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return unix.EINVAL
	}
	return nil
}

// openChild opens name in the directory dirfd without following a symlink or
// crossing into another mount. mode is used with O_CREAT only.
// Precondition: checkName(name) == nil.
func openChild(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Resolve: resolveChild,
	}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	for range 8 {
		fd, err := unix.Openat2(dirfd, name, &how)
		if err != unix.EINTR && err != unix.EAGAIN {
			return fd, err
		}
	}
	return -1, unix.EAGAIN
}

// status converts an error from a system call to a FUSE status.
func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fuse.Status(errno)
	}
	return fuse.EIO
}

// staleIfGone turns the errors that mean "that name is no longer this inode"
// into ESTALE, which makes the kernel look the path up again.
func staleIfGone(err error) error {
	switch err {
	case unix.ENOENT, unix.ELOOP, unix.EXDEV, unix.ENOTDIR:
		return unix.ESTALE
	}
	return err
}

const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME | unix.STATX_MNT_ID

// statxAt stats name in dirfd, or dirfd itself when name is "", without
// following a trailing symlink (a mount on name is entered: mntID tells).
// The key includes the birth time when the file system has one, so that a
// reused inode number is not taken for the inode a node was made for.
func statxAt(dirfd int, name string) (st unix.Stat_t, key inoKey, mntID uint64, err error) {
	var sx unix.Statx_t
	flags := unix.AT_SYMLINK_NOFOLLOW | unix.AT_STATX_SYNC_AS_STAT
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err = unix.Statx(dirfd, name, flags, statxMask, &sx); err != nil {
		return st, key, 0, err
	}
	st = unix.Stat_t{
		Dev:     unix.Mkdev(sx.Dev_major, sx.Dev_minor),
		Ino:     sx.Ino,
		Nlink:   uint64(sx.Nlink),
		Mode:    uint32(sx.Mode),
		Uid:     sx.Uid,
		Gid:     sx.Gid,
		Rdev:    unix.Mkdev(sx.Rdev_major, sx.Rdev_minor),
		Size:    int64(sx.Size),
		Blksize: int64(sx.Blksize),
		Blocks:  int64(sx.Blocks),
		Atim:    unix.Timespec{Sec: sx.Atime.Sec, Nsec: int64(sx.Atime.Nsec)},
		Mtim:    unix.Timespec{Sec: sx.Mtime.Sec, Nsec: int64(sx.Mtime.Nsec)},
		Ctim:    unix.Timespec{Sec: sx.Ctime.Sec, Nsec: int64(sx.Ctime.Nsec)},
	}
	key = inoKey{dev: st.Dev, ino: st.Ino}
	if sx.Mask&unix.STATX_BTIME != 0 {
		key.btime = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	if sx.Mask&unix.STATX_MNT_ID != 0 {
		mntID = sx.Mnt_id
	}
	return st, key, mntID, nil
}

// sameInode checks that fd is the inode key names.
func sameInode(fd int, key inoKey) error {
	_, got, _, err := statxAt(fd, "")
	if err != nil {
		return err
	}
	got.mnt = key.mnt
	if got != key {
		return unix.ESTALE
	}
	return nil
}

// xattrArgs is struct xattr_args of setxattrat(2) and getxattrat(2).
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// The *xattrat calls (Linux 6.13) act on a name relative to a directory
// descriptor without following a trailing symlink; with an empty path they
// would need a real (not O_PATH) descriptor.

func getxattrat(dirfd int, name, attr string, dest []byte) (int, error) {
	p, a, err := xattrNames(name, attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(dest))}
	if len(dest) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&dest[0])))
	}
	r, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func setxattrat(dirfd int, name, attr string, data []byte, flags int) error {
	p, a, err := xattrNames(name, attr)
	if err != nil {
		return err
	}
	args := xattrArgs{size: uint32(len(data)), flags: uint32(flags)}
	if len(data) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(&data[0])))
	}
	_, _, e := unix.Syscall6(unix.SYS_SETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	if e != 0 {
		return e
	}
	return nil
}

func listxattrat(dirfd int, name string, dest []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var d unsafe.Pointer
	if len(dest) > 0 {
		d = unsafe.Pointer(&dest[0])
	}
	r, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(d), uintptr(len(dest)), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func removexattrat(dirfd int, name, attr string) error {
	p, a, err := xattrNames(name, attr)
	if err != nil {
		return err
	}
	_, _, e := unix.Syscall6(unix.SYS_REMOVEXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func xattrNames(name, attr string) (*byte, *byte, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return nil, nil, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return nil, nil, err
	}
	return p, a, nil
}

const statusStale = fuse.Status(unix.ESTALE)
