package do

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths below a kept tree or an apply root are walked one component at a
// time, never through a symlink and never out of the root: the change set
// came from inside a sandbox.

// beneath is RESOLVE flags for one component below a directory we hold.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// cleanRel checks that p is an absolute, clean path and returns it
// relative to "/" ("" for the root itself).
func cleanRel(p string) (string, error) {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%q is not an absolute, clean path", p)
	}
	return strings.TrimPrefix(p, "/"), nil
}

// openDir opens the directory rel below root (O_PATH), creating missing
// components (0755) when create.
func openDir(root *os.File, rel string, create bool) (*os.File, error) {
	fd, err := unix.Dup(int(root.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	for _, c := range strings.Split(rel, "/") {
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			unix.Close(fd)
			return nil, fmt.Errorf("%q: no .. allowed", rel)
		}
		next, err := openat2(fd, c, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openat2(fd, c, unix.O_PATH|unix.O_DIRECTORY)
			}
		}
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		fd = next
	}
	return os.NewFile(uintptr(fd), rel), nil
}

func openat2(dirfd int, name string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: beneath})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		return fd, err
	}
}

// removeAllAt removes name in dir, recursively, never following a symlink.
func removeAllAt(dir int, name string) error {
	err := unix.Unlinkat(dir, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return err
	}
	fd, err := openat2(dir, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	names, err := d.Readdirnames(-1)
	if err == nil {
		for _, n := range names {
			if err = removeAllAt(fd, n); err != nil {
				break
			}
		}
	}
	d.Close()
	if err != nil {
		return err
	}
	return unix.Unlinkat(dir, name, unix.AT_REMOVEDIR)
}

// writeFileAt creates name in dir with content from src (n bytes) and
// mode, replacing what was there atomically (a temporary name, then
// rename: a symlink there is replaced, never followed).
func writeFileAt(dir int, name string, mode uint32, src interface{ Read([]byte) (int, error) }, n int64) error {
	tmp, f, err := tempAt(dir, name, mode)
	if err != nil {
		return err
	}
	_, err = copyN(f, src, n)
	if err == nil {
		err = f.Chmod(os.FileMode(mode & 0o777))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dir, tmp, dir, name)
	}
	if err != nil {
		unix.Unlinkat(dir, tmp, 0)
	}
	return err
}

func tempAt(dir int, name string, mode uint32) (string, *os.File, error) {
	for i := 0; ; i++ {
		tmp := fmt.Sprintf(".%s.moat-%d-%d", name, os.Getpid(), i)
		if len(tmp) > 255 {
			tmp = fmt.Sprintf(".moat-%d-%d", os.Getpid(), i)
		}
		fd, err := unix.Openat(dir, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode&0o777)
		if errors.Is(err, unix.EEXIST) && i < 100 {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return tmp, os.NewFile(uintptr(fd), tmp), nil
	}
}

// symlinkAt makes name in dir a symlink to target, replacing what was
// there.
func symlinkAt(dir int, name, target string) error {
	for i := 0; ; i++ {
		tmp := fmt.Sprintf(".moat-link-%d-%d", os.Getpid(), i)
		err := unix.Symlinkat(target, dir, tmp)
		if errors.Is(err, unix.EEXIST) && i < 100 {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Renameat(dir, tmp, dir, name); err != nil {
			unix.Unlinkat(dir, tmp, 0)
			return err
		}
		return nil
	}
}

// mkdirAt makes name in dir a directory with mode (replacing a
// non-directory there).
func mkdirAt(dir int, name string, mode uint32) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dir, name, 0); err != nil {
			return err
		}
	}
	if err := unix.Mkdirat(dir, name, mode&0o1777); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	fd, err := openat2(dir, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, mode&0o1777)
}

func copyN(dst *os.File, src interface{ Read([]byte) (int, error) }, n int64) (int64, error) {
	buf := make([]byte, 64<<10)
	var done int64
	for done < n {
		m, err := src.Read(buf[:min(int64(len(buf)), n-done)])
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return done, werr
			}
			done += int64(m)
		}
		if err != nil {
			if done < n {
				return done, fmt.Errorf("short content: %d of %d bytes: %w", done, n, err)
			}
			break
		}
	}
	return done, nil
}
