package fsys

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func rwMount(t *testing.T) *testMount {
	return mountFS(t, t.TempDir(), Options{Cache: CacheShort}, mountOpts{})
}

func TestReadWriteCreate(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("a"), "hello")
	if got := readFile(t, m.srcPath("a")); got != "hello" {
		t.Fatalf("host sees %q", got)
	}
	writeFile(t, m.srcPath("b"), "from host")
	if got := readFile(t, m.path("b")); got != "from host" {
		t.Fatalf("mount sees %q", got)
	}
	f, err := os.OpenFile(m.path("a"), os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(" world"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	f.Close()
	if got := readFile(t, m.srcPath("a")); got != "hello world" {
		t.Fatalf("after append host sees %q", got)
	}
	_, err = os.OpenFile(m.path("a"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	wantErrno(t, "O_EXCL on existing", err, unix.EEXIST)
}

func TestDirsAndNames(t *testing.T) {
	m := rwMount(t)
	if err := os.MkdirAll(m.path("d/e"), 0o750); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(m.srcPath("d/e"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o750 {
		t.Fatalf("host dir: %v %v", st, err)
	}
	writeFile(t, m.path("d/e/f"), "x")
	wantErrno(t, "rmdir non-empty", os.Remove(m.path("d/e")), unix.ENOTEMPTY)
	if err := os.Remove(m.path("d/e/f")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("d/e")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(m.srcPath("d/e")); !os.IsNotExist(err) {
		t.Fatalf("host still has d/e: %v", err)
	}
}

func TestRename(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("a"), "A")
	writeFile(t, m.path("b"), "B")
	os.Mkdir(m.path("d"), 0o755)
	if err := os.Rename(m.path("a"), m.path("d/a2")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, m.srcPath("d/a2")); got != "A" {
		t.Fatalf("renamed file has %q", got)
	}
	// The renamed node must still reopen by its new name.
	if got := readFile(t, m.path("d/a2")); got != "A" {
		t.Fatalf("read after rename: %q", got)
	}
	err := unix.Renameat2(unix.AT_FDCWD, m.path("b"), unix.AT_FDCWD, m.path("d/a2"), unix.RENAME_NOREPLACE)
	wantErrno(t, "RENAME_NOREPLACE onto existing", err, unix.EEXIST)
	if err := unix.Renameat2(unix.AT_FDCWD, m.path("b"), unix.AT_FDCWD, m.path("d/a2"), unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("RENAME_EXCHANGE: %v", err)
	}
	if readFile(t, m.srcPath("b")) != "A" || readFile(t, m.srcPath("d/a2")) != "B" {
		t.Fatal("exchange did not swap on the host")
	}
	if readFile(t, m.path("b")) != "A" || readFile(t, m.path("d/a2")) != "B" {
		t.Fatal("exchange did not swap in the mount")
	}
	writeFile(t, m.path("c"), "C")
	if err := os.Rename(m.path("c"), m.path("b")); err != nil {
		t.Fatalf("rename over: %v", err)
	}
	if readFile(t, m.path("b")) != "C" {
		t.Fatal("rename over: wrong content")
	}
}

func TestLinksAndSymlinks(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("f"), "data")
	if err := os.Link(m.path("f"), m.path("g")); err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	unix.Stat(m.srcPath("f"), &a)
	unix.Stat(m.srcPath("g"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("host link: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	unix.Stat(m.path("g"), &b)
	if b.Nlink != 2 || b.Ino != a.Ino {
		t.Fatalf("mount link: nlink %d ino %d", b.Nlink, b.Ino)
	}
	if err := os.Symlink("f", m.path("l")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.Readlink(m.path("l")); err != nil || got != "f" {
		t.Fatalf("readlink: %q %v", got, err)
	}
	if got, err := os.Readlink(m.srcPath("l")); err != nil || got != "f" {
		t.Fatalf("host readlink: %q %v", got, err)
	}
	if got := readFile(t, m.path("l")); got != "data" {
		t.Fatalf("through symlink: %q", got)
	}
	if err := os.Remove(m.path("l")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(m.path("f")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, m.path("g")); got != "data" {
		t.Fatalf("other link after unlink: %q", got)
	}
}

func TestSetattr(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("f"), "0123456789")
	if err := os.Chmod(m.path("f"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(m.path("f"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(m.path("f"), 4); err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1_000_000_000, 5)
	if err := os.Chtimes(m.path("f"), mt, mt); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(m.srcPath("f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o640 || st.Uid != 1234 || st.Gid != 5678 || st.Size != 4 ||
		st.Mtim.Sec != mt.Unix() || st.Mtim.Nsec != 5 {
		t.Fatalf("host attrs: mode %o uid %d gid %d size %d mtime %v", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim)
	}
	f, err := os.OpenFile(m.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8); err != nil {
		t.Fatalf("ftruncate: %v", err)
	}
	if fi, _ := os.Stat(m.srcPath("f")); fi.Size() != 8 {
		t.Fatalf("ftruncate size %d", fi.Size())
	}
	// Symlink times (utimensat with AT_SYMLINK_NOFOLLOW).
	os.Symlink("nowhere", m.path("l"))
	ts := []unix.Timespec{{Sec: 42}, {Sec: 43}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, m.path("l"), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatalf("lutimes: %v", err)
	}
	unix.Lstat(m.srcPath("l"), &st)
	if st.Mtim.Sec != 43 {
		t.Fatalf("symlink mtime %v", st.Mtim)
	}
}

func TestXattrUser(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("f"), "")
	os.Mkdir(m.path("d"), 0o755)
	for _, p := range []string{"f", "d"} {
		if err := unix.Setxattr(m.path(p), "user.k", []byte("v1"), 0); err != nil {
			t.Fatalf("setxattr %s: %v", p, err)
		}
		buf := make([]byte, 64)
		sz, err := unix.Getxattr(m.srcPath(p), "user.k", buf)
		if err != nil || string(buf[:sz]) != "v1" {
			t.Fatalf("host getxattr %s: %q %v", p, buf[:sz], err)
		}
		sz, err = unix.Getxattr(m.path(p), "user.k", buf)
		if err != nil || string(buf[:sz]) != "v1" {
			t.Fatalf("getxattr %s: %q %v", p, buf[:sz], err)
		}
		sz, err = unix.Getxattr(m.path(p), "user.k", nil)
		if err != nil || sz != 2 {
			t.Fatalf("getxattr size %s: %d %v", p, sz, err)
		}
		_, err = unix.Getxattr(m.path(p), "user.k", make([]byte, 1))
		wantErrno(t, "getxattr small buffer", err, unix.ERANGE)
		sz, err = unix.Listxattr(m.path(p), buf)
		if err != nil || !bytes.Contains(buf[:sz], []byte("user.k\x00")) {
			t.Fatalf("listxattr %s: %q %v", p, buf[:sz], err)
		}
		if err := unix.Removexattr(m.path(p), "user.k"); err != nil {
			t.Fatalf("removexattr %s: %v", p, err)
		}
		_, err = unix.Getxattr(m.path(p), "user.k", buf)
		wantErrno(t, "getxattr removed", err, unix.ENODATA)
	}
	err := unix.Setxattr(m.path("f"), "user.k", []byte("v"), unix.XATTR_REPLACE)
	wantErrno(t, "XATTR_REPLACE of missing", err, unix.ENODATA)
}

func TestStatfsFsync(t *testing.T) {
	m := rwMount(t)
	var a, b unix.Statfs_t
	if err := unix.Statfs(m.dir, &a); err != nil {
		t.Fatal(err)
	}
	unix.Statfs(m.src, &b)
	if a.Blocks != b.Blocks || a.Bsize != b.Bsize || a.Files != b.Files {
		t.Fatalf("statfs differs: %+v vs %+v", a, b)
	}
	d, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync dir: %v", err)
	}
}

func TestLargeDir(t *testing.T) {
	m := rwMount(t)
	want := fillLargeDir(t, m.src)
	checkListing(t, m.dir, want)
}

// A read-only image directory takes several READDIRPLUS requests without
// OPENDIR; the one after its last entries is answered from what the one
// before learnt (the end), and the listing stays whole, also listed again
// from another mount and after a rewind.
func TestLargeDirLong(t *testing.T) {
	src := t.TempDir()
	want := fillLargeDir(t, src)
	os.Mkdir(filepath.Join(src, "empty"), 0o755)
	os.Mkdir(filepath.Join(src, "small"), 0o755)
	for i := range 5 {
		writeFile(t, filepath.Join(src, "small", strconv.Itoa(i)), "")
	}
	for range 2 {
		m := mountFS(t, src, Options{Cache: CacheLong, ReadOnly: true}, mountOpts{flags: unix.MS_RDONLY})
		// One getdents takes the whole small directory (the server sees
		// its end), and the reader leaves before asking past it: a later
		// listing starts at offset 0 and must not be taken for the end.
		fd, err := unix.Open(m.path("small"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, err := unix.Getdents(fd, make([]byte, 64<<10))
		unix.Close(fd)
		if err != nil || n == 0 {
			t.Fatalf("getdents: %d bytes, %v", n, err)
		}
		checkListing(t, m.path("small"), []string{"0", "1", "2", "3", "4"})
		checkListing(t, m.dir, append(want, "empty", "small"))
		ents, err := os.ReadDir(m.path("empty"))
		if err != nil || len(ents) != 0 {
			t.Fatalf("empty directory: %d entries, %v", len(ents), err)
		}
		f, err := os.Open(m.dir)
		if err != nil {
			t.Fatal(err)
		}
		first, err := f.Readdirnames(-1)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		var again []string
		if err == nil {
			again, err = f.Readdirnames(-1)
		}
		f.Close()
		if err != nil || len(first) != len(want)+2 || len(again) != len(first) {
			t.Fatalf("listing, rewind, listing: %d then %d entries (want %d), %v", len(first), len(again), len(want)+2, err)
		}
	}
}

// fillLargeDir makes a directory's worth of entries too many for one
// READDIRPLUS reply in dir, and returns their names, sorted.
func fillLargeDir(t *testing.T, dir string) []string {
	const n = 3000
	want := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("entry-%05d-with-a-longer-name", i)
		want = append(want, name)
		writeFile(t, filepath.Join(dir, name), "")
	}
	return want
}

// checkListing lists dir with and without lstat-like entries and compares.
func checkListing(t *testing.T, dir string, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	for _, plus := range []bool{false, true} {
		var got []string
		if plus {
			ents, err := os.ReadDir(dir) // lstat-like walk, READDIRPLUS
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				got = append(got, e.Name())
			}
		} else {
			f, _ := os.Open(dir)
			names, err := f.Readdirnames(-1)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			got = names
		}
		sort.Strings(got)
		if !slices.Equal(got, want) {
			t.Fatalf("readdir (plus=%v): %d entries, want %d", plus, len(got), len(want))
		}
	}
}

// Page faults on the mount block while holding a Go scheduler P: served from
// another process (see startHelper).
func TestMmap(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), string(bytes.Repeat([]byte("a"), 8192)))
	dir, _ := startHelper(t, src, "short", "")
	f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if mem[100] != 'a' {
		t.Fatalf("mmap read %q", mem[100])
	}
	copy(mem[4096:], "written through mmap")
	if err := unix.Msync(mem, unix.MS_SYNC); err != nil {
		t.Fatal(err)
	}
	unix.Munmap(mem)
	got := readFile(t, filepath.Join(src, "f"))
	if got[4096:4116] != "written through mmap" {
		t.Fatalf("host sees %q", got[4096:4116])
	}
}

func TestODirect(t *testing.T) {
	m := rwMount(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	writeFile(t, m.srcPath("f"), string(data))
	fd, err := unix.Open(m.path("f"), unix.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 4096)
	if n, err := unix.Pread(fd, buf, 4096); err != nil || !bytes.Equal(buf[:n], data[4096:8192]) {
		t.Fatalf("O_DIRECT read: %d %v", n, err)
	}
	if _, err := unix.Pwrite(fd, []byte("direct"), 0); err != nil {
		t.Fatalf("O_DIRECT write: %v", err)
	}
	if got := readFile(t, m.srcPath("f")); got[:6] != "direct" {
		t.Fatalf("host sees %q", got[:6])
	}
}

func TestFifoAndSocket(t *testing.T) {
	m := rwMount(t)
	if err := unix.Mkfifo(m.path("fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(m.srcPath("fifo"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Fatalf("host fifo: %o %v", st.Mode, err)
	}
	within(t, 5*time.Second, "fifo round trip", func() error {
		go func() {
			w, err := os.OpenFile(m.path("fifo"), os.O_WRONLY, 0)
			if err == nil {
				w.WriteString("ping")
				w.Close()
			}
		}()
		r, err := os.Open(m.path("fifo"))
		if err != nil {
			return err
		}
		defer r.Close()
		b := make([]byte, 4)
		if _, err := r.Read(b); err != nil || string(b) != "ping" {
			return fmt.Errorf("fifo read %q %v", b, err)
		}
		return nil
	})
	sock := m.path("sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("bind unix socket in the mount: %v", err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("pong"))
			c.Close()
		}
	}()
	within(t, 5*time.Second, "unix socket round trip", func() error {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		defer c.Close()
		b := make([]byte, 4)
		if _, err := c.Read(b); err != nil || string(b) != "pong" {
			return fmt.Errorf("socket read %q %v", b, err)
		}
		return nil
	})
	if err := unix.Lstat(m.srcPath("sock"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		t.Fatalf("host socket: %o %v", st.Mode, err)
	}
}

func TestCopyFileRangeFallocate(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("src"), "copy me please")
	in, _ := os.Open(m.path("src"))
	defer in.Close()
	out, err := os.Create(m.path("dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	n, err := unix.CopyFileRange(int(in.Fd()), nil, int(out.Fd()), nil, 100, 0)
	if err != nil || n != 14 {
		t.Fatalf("copy_file_range: %d %v", n, err)
	}
	if got := readFile(t, m.srcPath("dst")); got != "copy me please" {
		t.Fatalf("host dst %q", got)
	}
	if err := unix.Fallocate(int(out.Fd()), 0, 0, 1<<20); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	if fi, _ := os.Stat(m.srcPath("dst")); fi.Size() != 1<<20 {
		t.Fatalf("fallocate size %d", fi.Size())
	}
}

func TestPassthrough(t *testing.T) {
	src := t.TempDir()
	data := bytes.Repeat([]byte("passthrough!"), 100000)
	writeFile(t, filepath.Join(src, "f"), string(data))
	m := mountFS(t, src, Options{Cache: CacheShort, Passthrough: true}, mountOpts{trace: true})
	if got := readFile(t, m.path("f")); got != string(data) {
		t.Fatal("passthrough read mismatch")
	}
	reads := m.countOps("READ")
	writeFile(t, m.path("f"), "rewritten")
	if got := readFile(t, m.srcPath("f")); got != "rewritten" {
		t.Fatalf("passthrough write: host sees %q", got)
	}
	if reads != 0 || m.countOps("WRITE") != 0 {
		t.Errorf("with passthrough the server still saw READ/WRITE (%d reads)", reads)
	}
}

// TestCreateNeverOpensExisting: CREATE only ever opens a file it made. A
// name that appeared after the kernel's negative lookup gets ESTALE (the
// kernel then looks it up again and opens it with its own permission
// check), never an open with the gofer's rights.
func TestCreateNeverOpensExisting(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o600))
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(err)
	defer unix.Close(dfd)
	if fd, err := createFile(dfd, "secret", unix.O_RDWR, 0o644, false); err != unix.ESTALE {
		unix.Close(fd)
		t.Errorf("create over an existing name: %v, want ESTALE", err)
	}
	if fd, err := createFile(dfd, "secret", unix.O_RDWR, 0o644, true); err != unix.EEXIST {
		unix.Close(fd)
		t.Errorf("exclusive create over an existing name: %v, want EEXIST", err)
	}
	fd, err := createFile(dfd, "new", unix.O_RDWR, 0o644, false)
	must(err)
	unix.Close(fd)
}

// TestTmpfileWriteOnlyThenRead: an O_TMPFILE opened write-only, then named
// with linkat, reads back through its name (the node's cached descriptor
// must not be the write-only one).
func TestTmpfileWriteOnlyThenRead(t *testing.T) {
	m := rwMount(t)
	fd, err := unix.Open(m.dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err == unix.EOPNOTSUPP || err == unix.EISDIR {
		t.Skipf("O_TMPFILE through FUSE not supported by this kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fd, []byte("tmp")); err != nil {
		t.Fatal(err)
	}
	err = unix.Linkat(fd, "", unix.AT_FDCWD, m.path("named"), unix.AT_EMPTY_PATH)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, m.path("named")); got != "tmp" {
		t.Errorf("read back %q", got)
	}
}

// TestVictimsBounded: descriptors kept for inodes that lost their name are
// bounded, so a container cannot make the gofer hold one per file.
func TestVictimsBounded(t *testing.T) {
	fs := &fileSystem{victims: victimsMax - 1}
	open := func() int {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	kept := &node{fd: -1}
	fs.keepFD(kept, open(), true, true)
	if !kept.permanent || fs.victims != victimsMax {
		t.Fatalf("below the bound: permanent %v, victims %d", kept.permanent, fs.victims)
	}
	over, fd := &node{fd: -1}, open()
	fs.keepFD(over, fd, true, true)
	if over.permanent || over.fd >= 0 || fs.victims != victimsMax {
		t.Errorf("past the bound: permanent %v fd %d victims %d", over.permanent, over.fd, fs.victims)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the refused descriptor is still open (%v)", err)
	}
	fs.dropFD(kept)
	if fs.victims != victimsMax-1 || kept.fd >= 0 {
		t.Errorf("after forget: victims %d fd %d", fs.victims, kept.fd)
	}
}

// TestCacheKeepsUnpinnedPastPinned: pinned and permanent descriptors do not
// count against the cache bound, so holding more than fdCacheMax files open
// (or keeping that many victims) does not empty the cache on every unpin.
func TestCacheKeepsUnpinnedPastPinned(t *testing.T) {
	fs := &fileSystem{}
	open := func() int {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fd
	}
	var pinned []*node
	for i := 0; i < fdCacheMax+10; i++ {
		n := &node{fd: -1}
		if _, _, err := fs.install(n, open(), true); err != nil {
			t.Fatal(err)
		}
		pinned = append(pinned, n)
	}
	cachedNode := &node{fd: -1}
	fs.install(cachedNode, open(), true)
	fs.unpinFD(cachedNode)
	if cachedNode.fd < 0 || fs.lruLen != 1 {
		t.Fatalf("with %d pinned descriptors the one unpinned was evicted (lru %d)", len(pinned), fs.lruLen)
	}
	for _, n := range pinned {
		fs.unpinFD(n)
	}
	if fs.lruLen != fdCacheMax {
		t.Errorf("after unpinning all: %d cached, want the bound %d", fs.lruLen, fdCacheMax)
	}
	fs.shrinkCache()
	if fs.lruLen != 0 {
		t.Errorf("after shrinkCache: %d cached", fs.lruLen)
	}
}
