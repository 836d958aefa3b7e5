package initproc

import (
	"fmt"
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
	must(copyUp(s, d, true))
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

// Under the gofer's root (nosuid overlay) set-id bits are not copied into
// a tmpfs that would make them work again.
func TestCopyUpDropsSetID(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	f := filepath.Join(src, "su")
	if err := os.WriteFile(f, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(f, 0o6755); err != nil {
		t.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		d := filepath.Join(dst, fmt.Sprint(keep))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		s, _ := os.Open(src)
		df, _ := os.Open(d)
		err := copyUp(s, df, keep)
		s.Close()
		df.Close()
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(filepath.Join(d, "su"))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o755)
		if keep {
			want |= os.ModeSetuid | os.ModeSetgid
		}
		if got := st.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid); got != want {
			t.Errorf("keepSetID=%v: copied mode %v, want %v", keep, got, want)
		}
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
