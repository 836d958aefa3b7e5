package fsys

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// roFixture makes a source tree with a file, a directory and an xattr.
func roFixture(t *testing.T) string {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "original")
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	unix.Setxattr(filepath.Join(src, "f"), "user.k", []byte("v"), 0)
	return src
}

// checkModifyingOps tries every modifying path through the mount; each must
// fail with EROFS and leave the host tree unchanged.
func checkModifyingOps(t *testing.T, m *testMount) {
	p := m.path
	wantErrno(t, "create", writeErr(p("new"), os.O_CREATE|os.O_WRONLY), unix.EROFS)
	wantErrno(t, "truncate", os.Truncate(p("f"), 0), unix.EROFS)
	wantErrno(t, "rename onto", os.Rename(p("f"), p("d/f")), unix.EROFS)
	wantErrno(t, "rename exchange", unix.Renameat2(unix.AT_FDCWD, p("f"), unix.AT_FDCWD, p("d"), unix.RENAME_EXCHANGE), unix.EROFS)
	wantErrno(t, "link", os.Link(p("f"), p("l")), unix.EROFS)
	wantErrno(t, "symlink", os.Symlink("f", p("s")), unix.EROFS)
	wantErrno(t, "mknod fifo", unix.Mkfifo(p("fifo"), 0o644), unix.EROFS)
	wantErrno(t, "mkdir", os.Mkdir(p("e"), 0o755), unix.EROFS)
	wantErrno(t, "unlink", os.Remove(p("f")), unix.EROFS)
	wantErrno(t, "rmdir", os.Remove(p("d")), unix.EROFS)
	wantErrno(t, "chmod", os.Chmod(p("f"), 0o777), unix.EROFS)
	wantErrno(t, "chown", os.Chown(p("f"), 1, 1), unix.EROFS)
	wantErrno(t, "utimes", unix.UtimesNano(p("f"), []unix.Timespec{{Sec: 1}, {Sec: 1}}), unix.EROFS)
	wantErrno(t, "setxattr", unix.Setxattr(p("f"), "user.x", []byte("1"), 0), unix.EROFS)
	wantErrno(t, "removexattr", unix.Removexattr(p("f"), "user.k"), unix.EROFS)
	if got := readFile(t, m.srcPath("f")); got != "original" {
		t.Errorf("host file changed: %q", got)
	}
	ents, _ := os.ReadDir(m.src)
	if len(ents) != 2 {
		t.Errorf("host tree changed: %d entries", len(ents))
	}
}

func writeErr(path string, flags int) error {
	f, err := os.OpenFile(path, flags, 0o644)
	if err == nil {
		f.Close()
	}
	return err
}

func TestReadOnlyShort(t *testing.T) {
	m := mountFS(t, roFixture(t), Options{ReadOnly: true, Cache: CacheShort}, mountOpts{})
	checkModifyingOps(t, m)
	wantErrno(t, "open O_RDWR", writeErr(m.path("f"), os.O_RDWR), unix.EROFS)
	wantErrno(t, "open O_WRONLY|O_TRUNC", writeErr(m.path("f"), os.O_WRONLY|os.O_TRUNC), unix.EROFS)
	if got := readFile(t, m.path("f")); got != "original" {
		t.Fatalf("read %q", got)
	}
}

// With CacheLong the kernel opens files without asking (NO_OPEN), so a
// write open succeeds unless the mount is MS_RDONLY, but nothing written
// ever reaches the host.
func TestReadOnlyLong(t *testing.T) {
	m := mountFS(t, roFixture(t), Options{ReadOnly: true, Cache: CacheLong}, mountOpts{})
	if got := readFile(t, m.path("f")); got != "original" {
		t.Fatalf("read %q", got)
	}
	checkModifyingOps(t, m)
	f, err := os.OpenFile(m.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open O_RDWR (NO_OPEN: the kernel does not ask): %v", err)
	}
	defer f.Close()
	_, err = f.WriteAt([]byte("XX"), 0)
	wantErrno(t, "write", err, unix.EROFS)
	wantErrno(t, "ftruncate", f.Truncate(1), unix.EROFS)
	wantErrno(t, "fallocate", unix.Fallocate(int(f.Fd()), 0, 0, 4096), unix.EROFS)
	in, _ := os.Open(m.path("f"))
	defer in.Close()
	_, err = unix.CopyFileRange(int(in.Fd()), nil, int(f.Fd()), nil, 4, 0)
	if err == nil {
		t.Errorf("copy_file_range into a read-only tree succeeded")
	}
	if got := readFile(t, m.srcPath("f")); got != "original" {
		t.Errorf("host file changed: %q", got)
	}
	if got := readFile(t, m.path("f")); got != "original" {
		t.Errorf("mount shows %q after refused writes", got)
	}
}

func TestReadOnlyLongMountRdonly(t *testing.T) {
	m := mountFS(t, roFixture(t), Options{ReadOnly: true, Cache: CacheLong}, mountOpts{flags: unix.MS_RDONLY})
	wantErrno(t, "open O_RDWR on MS_RDONLY", writeErr(m.path("f"), os.O_RDWR), unix.EROFS)
	if got := readFile(t, m.path("f")); got != "original" {
		t.Fatalf("read %q", got)
	}
}

func TestNoDeviceNodes(t *testing.T) {
	m := rwMount(t)
	wantErrno(t, "mknod char", unix.Mknod(m.path("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))), unix.EPERM)
	wantErrno(t, "mknod block", unix.Mknod(m.path("sda"), unix.S_IFBLK|0o666, int(unix.Mkdev(8, 0))), unix.EPERM)
	wantErrno(t, "mknod whiteout", unix.Mknod(m.path("wh"), unix.S_IFCHR, 0), unix.EPERM)
	writeFile(t, m.path("f"), "x")
	err := unix.Renameat2(unix.AT_FDCWD, m.path("f"), unix.AT_FDCWD, m.path("g"), unix.RENAME_WHITEOUT)
	wantErrno(t, "RENAME_WHITEOUT", err, unix.EPERM)
	if err := unix.Mknod(m.path("reg"), unix.S_IFREG|0o644, 0); err != nil {
		t.Fatalf("mknod regular: %v", err)
	}
	if ents, _ := os.ReadDir(m.src); len(ents) != 2 {
		t.Fatalf("host has %d entries, want f and reg", len(ents))
	}
}

func TestSetuidStripped(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.path("f"), "x")
	if err := os.Chmod(m.path("f"), 0o755|os.ModeSetuid|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(m.path("g"), unix.O_CREAT|unix.O_WRONLY, 0o6755)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if err := unix.Mkdir(m.path("d"), 0o2755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(m.path("p"), unix.S_IFIFO|0o6644, 0); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"f": 0o755, "g": 0o755, "d": 0o755, "p": 0o644} {
		var st unix.Stat_t
		unix.Lstat(m.srcPath(name), &st)
		if st.Mode&0o7777 != want {
			t.Errorf("%s: host mode %o, want %o", name, st.Mode&0o7777, want)
		}
	}
}

// asCaller runs f on a thread whose fs ids are uid/gid, so that the FUSE
// requests it makes carry them.
func asCaller(t *testing.T, uid, gid int, f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its ids
		unix.Setfsgid(gid)
		unix.Setfsuid(uid)
		f()
	}()
	<-done
}

func TestOwnershipAndSetgid(t *testing.T) {
	m := rwMount(t)
	sgid := m.srcPath("sgid")
	os.Mkdir(sgid, 0o777)
	os.Chown(sgid, 0, 4242)
	unix.Chmod(sgid, 0o2777)
	os.Chmod(m.src, 0o777)
	// The caller works relative to descriptors: the test's temporary
	// directories above the mount are not searchable by uid 1000.
	root, err := unix.Open(m.dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	var errs []error
	asCaller(t, 1000, 1001, func() {
		for _, p := range []string{"f", "sgid/f"} {
			fd, err := unix.Openat(root, p, unix.O_CREAT|unix.O_WRONLY, 0o644)
			unix.Close(fd)
			errs = append(errs, err)
		}
		errs = append(errs, unix.Mkdirat(root, "d", 0o755), unix.Mkdirat(root, "sgid/d", 0o755),
			unix.Symlinkat("x", root, "l"), unix.Mknodat(root, "sgid/p", unix.S_IFIFO|0o600, 0))
	})
	for _, err := range errs {
		if err != nil {
			t.Fatalf("create as 1000:1001: %v", err)
		}
	}
	for p, want := range map[string][2]uint32{
		"f": {1000, 1001}, "d": {1000, 1001}, "l": {1000, 1001},
		"sgid/f": {1000, 4242}, "sgid/d": {1000, 4242}, "sgid/p": {1000, 4242},
	} {
		var st unix.Stat_t
		unix.Lstat(m.srcPath(p), &st)
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: host owner %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
		var fst unix.Stat_t
		unix.Lstat(m.path(p), &fst)
		if fst.Uid != want[0] || fst.Gid != want[1] {
			t.Errorf("%s: mount owner %d:%d, want %d:%d", p, fst.Uid, fst.Gid, want[0], want[1])
		}
	}
	var st unix.Stat_t
	unix.Stat(m.srcPath("sgid/d"), &st)
	if st.Mode&unix.S_ISGID == 0 {
		t.Errorf("directory made in a setgid directory lost setgid: %o", st.Mode)
	}
}

func TestPrivilegedXattrs(t *testing.T) {
	for _, allow := range []bool{false, true} {
		m := mountFS(t, t.TempDir(), Options{Cache: CacheShort, AllowPrivilegedXattrs: allow}, mountOpts{})
		writeFile(t, m.path("f"), "")
		for _, attr := range []string{"trusted.x", "security.x"} {
			err := unix.Setxattr(m.path("f"), attr, []byte("1"), 0)
			if !allow {
				wantErrno(t, "setxattr "+attr, err, unix.EPERM)
				wantErrno(t, "removexattr "+attr, unix.Removexattr(m.path("f"), attr), unix.EPERM)
				continue
			}
			if err != nil {
				t.Errorf("allowed setxattr %s: %v", attr, err)
			}
			if err := unix.Removexattr(m.path("f"), attr); err != nil {
				t.Errorf("allowed removexattr %s: %v", attr, err)
			}
		}
	}
}

// A symlink pointing out of the tree is the client's to resolve, inside its
// own root: the server hands back the link, never its target.
// Under an overlay (OverlayLower) the tree has no extended attributes at
// all (the kernel stops asking after the first ENOSYS), so the overlay's own
// cannot steer it; without OverlayLower every attribute is served.
func TestOverlayLowerHasNoXattrs(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "")
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	attrs := []string{"trusted.overlay.redirect", "user.overlay.metacopy", "user.k"}
	for _, p := range []string{"f", "d"} {
		for _, attr := range attrs {
			if err := unix.Setxattr(filepath.Join(src, p), attr, []byte("/x"), 0); err != nil {
				t.Skipf("setxattr %s on the host: %v", attr, err)
			}
		}
	}
	for _, lower := range []bool{true, false} {
		m := mountFS(t, src, Options{Cache: CacheLong, ReadOnly: true, OverlayLower: lower}, mountOpts{flags: unix.MS_RDONLY})
		for _, p := range []string{"f", "d"} {
			buf := make([]byte, 256)
			for _, attr := range attrs {
				sz, err := unix.Getxattr(m.path(p), attr, buf)
				if lower {
					wantErrno(t, "getxattr "+attr+" of "+p, err, unix.EOPNOTSUPP)
				} else if err != nil || string(buf[:sz]) != "/x" {
					t.Errorf("without OverlayLower, getxattr %s of %s: %q %v", attr, p, buf[:sz], err)
				}
			}
			sz, err := unix.Listxattr(m.path(p), buf)
			if lower {
				wantErrno(t, "listxattr of "+p, err, unix.EOPNOTSUPP)
			} else if err != nil || !bytes.Contains(buf[:sz], []byte("user.k\x00")) {
				t.Errorf("without OverlayLower, listxattr of %s: %q %v", p, buf[:sz], err)
			}
		}
	}
}

func TestSymlinkStaysInside(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	writeFile(t, filepath.Join(src, "etc/shadow"), "inside")
	links := map[string]string{"abs": "/etc/shadow", "rel": "../../../../etc/shadow", "up": "../../../../"}
	for name, target := range links {
		os.Symlink(target, filepath.Join(src, name))
	}
	m := mountFS(t, src, Options{Cache: CacheShort}, mountOpts{})
	root, err := os.Open(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for name, target := range links {
		if got, _ := os.Readlink(m.path(name)); got != target {
			t.Errorf("readlink %s = %q", name, got)
		}
		path := name
		if name == "up" {
			path = "up/etc/shadow"
		}
		fd, err := openInRoot(int(root.Fd()), path, unix.O_RDONLY)
		if err != nil {
			t.Errorf("open %s in root: %v", path, err)
			continue
		}
		buf := make([]byte, 64)
		n, _ := unix.Read(fd, buf)
		unix.Close(fd)
		if string(buf[:n]) != "inside" {
			t.Errorf("%s resolved to %q", path, buf[:n])
		}
	}
}

// The server itself never follows a symlink: direct requests naming one.
func TestServerNeverFollows(t *testing.T) {
	src, outside := t.TempDir(), t.TempDir()
	canary := filepath.Join(outside, "canary")
	writeFile(t, canary, "canary")
	os.Symlink(canary, filepath.Join(src, "link"))
	os.Symlink(outside, filepath.Join(src, "dirlink"))
	root, _ := os.Open(src)
	defer root.Close()
	fs, err := newFileSystem(root, Options{Cache: CacheShort})
	if err != nil {
		t.Fatal(err)
	}
	defer fs.closeAll()
	hdr := fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}
	var out fuse.EntryOut
	if st := fs.Lookup(nil, &hdr, "link", &out); !st.Ok() || out.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Fatalf("lookup link: %v mode %o", st, out.Mode)
	}
	if st := fs.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: out.NodeId}, Flags: unix.O_RDWR}, &fuse.OpenOut{}); st.Ok() {
		t.Errorf("open of a symlink node succeeded")
	}
	var cout fuse.CreateOut
	in := fuse.CreateIn{InHeader: hdr, Flags: unix.O_WRONLY | unix.O_TRUNC, Mode: 0o644}
	if st := fs.Create(nil, &in, "link", &cout); st.Ok() {
		t.Errorf("create through a symlink succeeded")
	}
	var dout fuse.EntryOut
	fs.Lookup(nil, &hdr, "dirlink", &dout)
	if st := fs.Lookup(nil, &fuse.InHeader{NodeId: dout.NodeId}, "canary", &fuse.EntryOut{}); st.Ok() {
		t.Errorf("lookup under a symlink node succeeded")
	}
	if st := fs.Mkdir(nil, &fuse.MkdirIn{InHeader: fuse.InHeader{NodeId: dout.NodeId}, Mode: 0o755}, "x", &fuse.EntryOut{}); st.Ok() {
		t.Errorf("mkdir under a symlink node succeeded")
	}
	for _, bad := range []string{"..", ".", "", "a/b", "a\x00b"} {
		if st := fs.Lookup(nil, &hdr, bad, &fuse.EntryOut{}); st != fuse.EINVAL {
			t.Errorf("lookup %q: %v, want EINVAL", bad, st)
		}
		if st := fs.Mkdir(nil, &fuse.MkdirIn{InHeader: hdr, Mode: 0o755}, bad, &fuse.EntryOut{}); st != fuse.EINVAL {
			t.Errorf("mkdir %q: %v, want EINVAL", bad, st)
		}
	}
	if got := readFile(t, canary); got != "canary" {
		t.Fatalf("canary changed: %q", got)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("outside dir changed")
	}
}

// Other mounts below the root show as empty read-only placeholders.
func TestMountPointPlaceholder(t *testing.T) {
	src := t.TempDir()
	mnt := filepath.Join(src, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	writeFile(t, filepath.Join(mnt, "hidden"), "secret")
	fileMnt := filepath.Join(src, "file")
	writeFile(t, fileMnt, "covered")
	other := filepath.Join(t.TempDir(), "other")
	writeFile(t, other, "bound file")
	if err := unix.Mount(other, fileMnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(fileMnt, unix.MNT_DETACH)
	m := mountFS(t, src, Options{Cache: CacheShort}, mountOpts{})
	fi, err := os.Stat(m.path("mnt"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("placeholder dir: %v %v", fi, err)
	}
	if ents, err := os.ReadDir(m.path("mnt")); err != nil || len(ents) != 0 {
		t.Fatalf("placeholder listing: %v %v", ents, err)
	}
	_, err = os.Stat(m.path("mnt/hidden"))
	wantErrno(t, "stat inside a placeholder", err, unix.ENOENT)
	wantErrno(t, "create inside a placeholder", os.WriteFile(m.path("mnt/x"), nil, 0o644), unix.EROFS)
	wantErrno(t, "mkdir inside a placeholder", os.Mkdir(m.path("mnt/x"), 0o755), unix.EROFS)
	writeFile(t, m.path("a"), "a")
	wantErrno(t, "rename into a placeholder", os.Rename(m.path("a"), m.path("mnt/a")), unix.EXDEV)
	wantErrno(t, "chmod a placeholder", os.Chmod(m.path("mnt"), 0o777), unix.EROFS)
	if got := readFile(t, m.path("file")); got != "" {
		t.Errorf("file placeholder reads %q", got)
	}
	wantErrno(t, "write a file placeholder", os.WriteFile(m.path("file"), []byte("x"), 0o644), unix.EROFS)
	if got := readFile(t, other); got != "bound file" {
		t.Errorf("bound file changed: %q", got)
	}
	if got := readFile(t, filepath.Join(mnt, "hidden")); got != "secret" {
		t.Errorf("hidden file changed: %q", got)
	}
}

func TestReadOnlyLongMmapWithoutRdonly(t *testing.T) {
	// A MAP_SHARED write on a CacheLong read-only mount without MS_RDONLY:
	// writeback fails with EROFS and the host file never changes, but other
	// readers of the mount see the dirty page until it is dropped. Hence
	// MS_RDONLY is required for such mounts (documented on Serve).
	src := roFixture(t)
	dir, _ := startHelper(t, src, "long-nordonly", "")
	f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	copy(mem, "MODIFIED")
	err = unix.Msync(mem, unix.MS_SYNC)
	unix.Munmap(mem)
	t.Logf("msync of a refused page: %v", err)
	if got := readFile(t, filepath.Join(src, "f")); got != "original" {
		t.Errorf("host file changed: %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "f")); !bytes.Equal([]byte(got), []byte("original")) {
		t.Logf("NOTE: other readers of the mount see %q until the page is dropped", got)
	}
}

// openInRoot resolves path as a process whose root is dirfd would. openat2
// fails with EAGAIN when anything is renamed anywhere meanwhile: retry.
func openInRoot(dirfd int, path string, flags int) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, path, &unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT})
		if err != unix.EAGAIN {
			return fd, err
		}
	}
}

// An inode swapped in under a new name between its creation and the chown
// (by a process outside the mount: the host, or another container on the
// same tree) is never handed to the caller. mk simulates the outside
// process: it makes the entry, then renames a foreign inode over it.
func TestMakeNeverChownsASwappedInode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown to another user)")
	}
	caller := fuse.Owner{Uid: 4321, Gid: 4321}
	dir := t.TempDir()
	pfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	// Foreign inodes: a host file linked in (two links), a file of
	// another user, and (where the file system records births) an old
	// directory of the server's own user.
	writeFile(t, filepath.Join(dir, "shadow"), "secret")
	writeFile(t, filepath.Join(dir, "theirs"), "x")
	os.Chown(filepath.Join(dir, "theirs"), 1111, 1111)
	os.Mkdir(filepath.Join(dir, "olddir"), 0o755)
	os.MkdirAll(filepath.Join(dir, "secretdir", "keys"), 0o700)
	_, key, _, err := statxAt(pfd, "olddir")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, foreign string
		swap          func(t *testing.T, newName string)
	}{
		{"link", "shadow", func(t *testing.T, n string) {
			if err := unix.Linkat(pfd, "shadow", pfd, "shadow-link", 0); err != nil {
				t.Fatal(err)
			}
			if err := unix.Renameat2(pfd, "shadow-link", pfd, n, unix.RENAME_EXCHANGE); err != nil {
				t.Fatal(err)
			}
		}},
		{"server's non-empty directory", "secretdir", func(t *testing.T, n string) {
			if err := unix.Renameat2(pfd, "secretdir", pfd, n, unix.RENAME_EXCHANGE); err != nil {
				t.Fatal(err)
			}
		}},
		{"other owner", "theirs", func(t *testing.T, n string) {
			if err := unix.Renameat2(pfd, "theirs", pfd, n, unix.RENAME_EXCHANGE); err != nil {
				t.Fatal(err)
			}
		}},
	}
	if key.btime != 0 {
		time.Sleep(2 * birthSlack) // make olddir older than any request
		cases = append(cases, struct {
			name, foreign string
			swap          func(t *testing.T, newName string)
		}{"old directory", "olddir", func(t *testing.T, n string) {
			if err := unix.Renameat2(pfd, "olddir", pfd, n, unix.RENAME_EXCHANGE); err != nil {
				t.Fatal(err)
			}
		}})
	} else {
		t.Log("old directory case not run: the temporary directory's file system records no birth times")
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := "new" + strconv.Itoa(i)
			var before unix.Stat_t
			unix.Fstatat(pfd, c.foreign, &before, unix.AT_SYMLINK_NOFOLLOW)
			_, _, err := makeLocked(pfd, n, unix.S_IFDIR, caller, 0, func(dirfd int) (int, error) {
				if err := unix.Mkdirat(dirfd, n, 0o755); err != nil {
					return -1, err
				}
				c.swap(t, n)
				return -1, nil
			})
			if errnoOf(err) != unix.EEXIST {
				t.Fatalf("makeLocked over a swapped-in inode: %v, want EEXIST", err)
			}
			var st unix.Stat_t
			if err := unix.Fstatat(pfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Fatal(err)
			}
			if st.Ino != before.Ino || st.Uid != before.Uid || st.Gid != before.Gid {
				t.Fatalf("foreign inode changed: ino %d→%d owner %d:%d→%d:%d",
					before.Ino, st.Ino, before.Uid, before.Gid, st.Uid, st.Gid)
			}
		})
	}
	// Without a swap the new inode is the caller's.
	st, _, err := makeLocked(pfd, "mine", unix.S_IFDIR, caller, unix.AT_REMOVEDIR, func(dirfd int) (int, error) {
		return -1, unix.Mkdirat(dirfd, "mine", 0o755)
	})
	if err != nil || st.Uid != caller.Uid || st.Gid != caller.Gid {
		t.Fatalf("plain mkdir: %v, owner %d:%d", err, st.Uid, st.Gid)
	}
}
