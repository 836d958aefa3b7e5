package initproc

import (
	"errors"
	"fmt"
	"io"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// copyUpMaxDepth bounds the directory depth a tmpcopyup copies (the image
// is the container's, so it may be built to be deep).
const copyUpMaxDepth = 256

// openCopyUpSource opens, for reading, the directory a tmpcopyup tmpfs is
// about to cover. The descriptor keeps naming the covered directory once
// the tmpfs is mounted over it.
func openCopyUpSource(dest *os.File) (*os.File, error) {
	src, err := pathrs.Reopen(dest, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, fmt.Errorf("tmpcopyup: open what the tmpfs covers: %w", err)
	}
	return src, nil
}

// copyUp copies the tree under src into dst (the fresh tmpfs), as runc's
// tmpcopyup does: directories, regular files, symlinks and FIFOs with their
// modes, owners and modification times; device nodes and sockets are left
// out. The tree is the image's, so it is walked with descriptors only,
// never following a symlink, and its size is bounded by the tmpfs's.
//
// keepSetID keeps set-user-ID and set-group-ID bits. Under the gofer's root
// they are inert (its overlay is nosuid); a tmpfs the spec mounts without
// nosuid must not make them work again, so there they are dropped.
func copyUp(src, dst *os.File, keepSetID bool) error {
	keep := uint32(0o7777)
	if !keepSetID {
		keep &^= unix.S_ISUID | unix.S_ISGID
	}
	return copyDir(int(src.Fd()), int(dst.Fd()), keep, 0)
}

func copyDir(src, dst int, keep uint32, depth int) error {
	if depth > copyUpMaxDepth {
		return fmt.Errorf("tmpcopyup: deeper than %d directories", copyUpMaxDepth)
	}
	// ReadDir through a dup: the File owns (and closes) its descriptor.
	dupFD, err := unix.Dup(src)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(dupFD), "copyup-src")
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("tmpcopyup: list: %w", err)
	}
	for _, e := range ents {
		if err := copyEntry(src, dst, e.Name(), keep, depth); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return nil
}

func copyEntry(src, dst int, name string, keep uint32, depth int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	mode := uint32(st.Mode) & keep
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return err
		}
		sfd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sfd)
		if err := sameInode(sfd, &st); err != nil {
			return err
		}
		dfd, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := copyDir(sfd, dfd, keep, depth+1); err != nil {
			return err
		}
		return finish(dfd, "", &st, mode)
	case unix.S_IFREG:
		// O_NONBLOCK: a FIFO swapped in after the fstatat must not hang
		// init's open; the opened inode is checked to be the one stat'ed.
		sfd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		in := os.NewFile(uintptr(sfd), "copyup-file")
		defer in.Close()
		if err := sameInode(sfd, &st); err != nil {
			return err
		}
		dfd, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		out := os.NewFile(uintptr(dfd), "copyup-copy")
		defer out.Close()
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return finish(dfd, "", &st, mode)
	case unix.S_IFLNK:
		target := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src, name, target)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(target[:n]), dst, name); err != nil {
			return err
		}
		return finish(dst, name, &st, 0)
	case unix.S_IFIFO:
		if err := unix.Mkfifoat(dst, name, 0o600); err != nil {
			return err
		}
		return finish(dst, name, &st, mode)
	}
	return nil // device nodes and sockets: not copied
}

// sameInode checks that fd is the inode st describes (an entry swapped
// between fstatat and openat is refused, not copied).
func sameInode(fd int, st *unix.Stat_t) error {
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return err
	}
	if got.Dev != st.Dev || got.Ino != st.Ino || got.Mode&unix.S_IFMT != st.Mode&unix.S_IFMT {
		return errors.New("changed while being copied")
	}
	return nil
}

// finish gives a copied entry its owner, mode and modification time: on
// fd itself when name is "", else on name in directory fd (a symlink or a
// FIFO, never followed). The mode comes after the owner, which clears
// set-id bits. An owner with no id in the user namespace is left to the
// creator.
func finish(fd int, name string, st *unix.Stat_t, mode uint32) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(fd, name, int(st.Uid), int(st.Gid), flags); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EPERM) {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		var err error
		if name == "" {
			err = unix.Fchmod(fd, mode)
		} else {
			err = unix.Fchmodat(fd, name, mode, 0)
		}
		if err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if name == "" {
		return unix.Futimes(fd, []unix.Timeval{unix.NsecToTimeval(unix.TimespecToNsec(st.Atim)), unix.NsecToTimeval(unix.TimespecToNsec(st.Mtim))})
	}
	return unix.UtimesNanoAt(fd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}
