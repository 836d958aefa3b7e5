package doinit

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// streamUpper walks the upper layer shown at dir and writes every entry
// to out (see ipc.UpperEntry); with content, regular files follow their
// entry. Symlinks are never followed.
// Precondition: no other process of the sandbox runs (nothing changes).
func streamUpper(dir string, out io.Writer, content bool) error {
	w := bufio.NewWriterSize(out, 64<<10)
	enc := json.NewEncoder(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		rel, rerr := filepath.Rel(dir, p)
		if rerr != nil {
			return rerr
		}
		path := filepath.Join("/", rel)
		if err != nil {
			return enc.Encode(ipc.UpperEntry{Path: path, Type: "error", Target: err.Error()})
		}
		if path == "/" {
			return nil
		}
		e, f, err := describe(p, path, content)
		if err != nil {
			return enc.Encode(ipc.UpperEntry{Path: path, Type: "error", Target: err.Error()})
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		if f != nil {
			defer f.Close()
			if _, err := io.CopyN(w, f, e.Size); err != nil {
				return err // the stream is broken: its reader sees it short
			}
		}
		return nil
	})
	if err == nil {
		err = enc.Encode(ipc.UpperEntry{Type: "end"})
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// sparseSlack is how much of a file's apparent size may be unallocated
// before it counts as sparse (tmpfs rounds to pages).
const sparseSlack = 64 << 10

// describe is one entry; for a regular file with content, its open
// descriptor, whose size the entry carries.
func describe(p, path string, content bool) (ipc.UpperEntry, *os.File, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return ipc.UpperEntry{}, nil, err
	}
	e := ipc.UpperEntry{Path: path, Mode: st.Mode & 0o7777}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = "file", st.Size
		if !content {
			return e, nil, nil
		}
		if st.Blocks*512+sparseSlack < st.Size {
			return e, nil, nil // sparse: its apparent size could fill the host's disk
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return e, nil, err
		}
		f := os.NewFile(uintptr(fd), p)
		if err := unix.Fstat(fd, &st); err != nil {
			f.Close()
			return e, nil, err
		}
		e.Size, e.Content = st.Size, true
		return e, f, nil
	case unix.S_IFDIR:
		e.Type = "dir"
		e.Opaque = xattrIs(p, "user.overlay.opaque", "y") || xattrIs(p, "trusted.overlay.opaque", "y")
	case unix.S_IFLNK:
		e.Type, e.Size = "symlink", st.Size
		t, err := os.Readlink(p)
		if err != nil {
			return e, nil, err
		}
		e.Target = t
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			e.Type = "whiteout"
			break
		}
		e.Type = "other"
	default:
		e.Type = "other"
	}
	return e, nil, nil
}

func xattrIs(p, name, want string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(p, name, buf)
	return err == nil && string(buf[:n]) == want
}

// othersTimeout bounds the wait for the killed processes.
const othersTimeout = 10 * time.Second

// endOthers kills every other process of the sandbox (pid 1 may) and
// reaps them, so that the upper layer no longer changes.
func endOthers() {
	_ = unix.Kill(-1, unix.SIGKILL)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(-1, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return // ECHILD: none left
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(othersTimeout):
	}
}
