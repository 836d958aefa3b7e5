package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var propagationFlags = map[string]uintptr{
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// prepareRoot turns the root filesystem into a mount point of its own in
// init's mount namespace, with nothing propagating back to the host.
// Precondition: init runs in a new mount namespace.
func prepareRoot(path string, s *specs.Spec) error {
	if err := isolateMounts(path, s); err != nil {
		return err
	}
	if err := unix.Mount(path, path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind root %s: %w", path, err)
	}
	return nil
}

// isolateMounts sets the propagation of init's mount namespace and makes the
// mount holding path private, so that nothing init mounts at path (the
// root's bind, or a gofer root's sandbox tmpfs) reaches the host, whatever
// rootfsPropagation says.
// Precondition: init runs in a new mount namespace.
func isolateMounts(path string, s *specs.Spec) error {
	flag := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if p, ok := propagationFlags[s.Linux.RootfsPropagation]; ok {
		flag = p
	}
	if err := unix.Mount("", "/", "", flag, ""); err != nil {
		return fmt.Errorf("set / propagation: %w", err)
	}
	return makeParentPrivate(path)
}

// makeParentPrivate makes the mount holding path private: pivot_root refuses
// a new root whose parent mount is shared.
func makeParentPrivate(path string) error {
	mp, err := mountPointOf(path)
	if err != nil {
		return err
	}
	if err := unix.Mount("", mp, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", mp, err)
	}
	return nil
}

// mountPointOf returns the longest mount point that is a prefix of path.
func mountPointOf(path string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	best := "/"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best, sc.Err()
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// maskPaths hides paths from the container: files under /dev/null, and
// directories under an empty read-only tmpfs. Missing paths are skipped.
func (r *rootfs) maskPaths(paths []string) error {
	for _, p := range paths {
		h, err := r.lookup(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
		dir, err := isDir(h)
		if err == nil {
			if dir {
				err = unix.Mount("tmpfs", fdPath(h), "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,nr_inodes=1")
			} else {
				err = unix.Mount("/dev/null", fdPath(h), "", unix.MS_BIND, "")
			}
		}
		h.Close()
		if err != nil {
			return fmt.Errorf("masked path %s: %w", p, err)
		}
	}
	return nil
}

// readonlyPaths makes each path a read-only bind mount of itself.
func (r *rootfs) readonlyPaths(paths []string) error {
	for _, p := range paths {
		h, err := r.lookup(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
		err = unix.Mount(fdPath(h), fdPath(h), "", unix.MS_BIND|unix.MS_REC, "")
		h.Close()
		if err == nil {
			err = r.remountBind(p, unix.MS_RDONLY, true)
		}
		if err != nil {
			return fmt.Errorf("readonly path %s: %w", p, err)
		}
	}
	return nil
}

// pivot makes the root filesystem "/" and detaches the host's tree.
func (r *rootfs) pivot() error {
	oldRoot, err := os.OpenFile("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer oldRoot.Close()
	if err := unix.Fchdir(int(r.handle.Fd())); err != nil {
		return fmt.Errorf("chdir to root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; the
	// detach below removes it without needing a directory for it.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// Step onto the old root (now stacked on "/") before changing it, or
	// the changes would hit the container's own mounts.
	if err := unix.Fchdir(int(oldRoot.Fd())); err != nil {
		return fmt.Errorf("chdir to old root: %w", err)
	}
	// Nothing of the unmount may propagate to the host.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("isolate old root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// readonlyRoot remounts the root read-only (root.readonly).
func (r *rootfs) readonlyRoot() error {
	return r.remountBind("/", unix.MS_RDONLY, true)
}

// cleanDest normalises a container path.
func cleanDest(p string) string { return filepath.Clean("/" + p) }
