package initproc

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCopyUpTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "d"), 0o750))
	must(os.WriteFile(filepath.Join(src, "d", "f"), []byte("x"), 0o604))
	must(os.Chmod(filepath.Join(src, "d", "f"), 0o604))
	must(os.Symlink("/etc/passwd", filepath.Join(src, "l")))
	must(unix.Mkfifo(filepath.Join(src, "p"), 0o600))
	s, err := os.Open(src)
	must(err)
	defer s.Close()
	d, err := os.Open(dst)
	must(err)
	defer d.Close()
	must(copyUp(s, d))
	if data, err := os.ReadFile(filepath.Join(dst, "d", "f")); err != nil || string(data) != "x" {
		t.Errorf("d/f: %q, %v", data, err)
	}
	if st, err := os.Stat(filepath.Join(dst, "d", "f")); err != nil || st.Mode().Perm() != 0o604 {
		t.Errorf("d/f mode: %v, %v", st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "l")); err != nil || l != "/etc/passwd" {
		t.Errorf("l: %q, %v", l, err)
	}
	if st, err := os.Lstat(filepath.Join(dst, "p")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("p is not a FIFO: %v, %v", st, err)
	}
}

// An entry swapped between the stat and the open is refused.
func TestSameInodeRefusesSwap(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(a, &st); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(b, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if sameInode(fd, &st) == nil {
		t.Error("another inode was taken for the one stat'ed")
	}
}
