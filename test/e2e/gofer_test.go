package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Tests of the gofer (issue 4): they run in the gofer tier only.

func needGofer(t *testing.T) {
	t.Helper()
	if fileAccess != "gofer" {
		t.Skipf("SKIP (this tier runs --file-access=%s): a gofer test", fileAccess)
	}
}

// treeSum hashes every path, mode, owner and content under dir.
func treeSum(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	var paths []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	for _, p := range paths {
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		fmt.Fprintf(h, "%s %o %d %d %d\n", strings.TrimPrefix(p, dir), st.Mode, st.Uid, st.Gid, st.Size)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			f, err := os.Open(p)
			must(t, err)
			io.Copy(h, f)
			f.Close()
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestGoferImageUntouched: the default memory overlay leaves the image
// byte-identical whatever the container deletes, rewrites or creates;
// with --overlay=none the writes land.
func TestGoferImageUntouched(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	steps := [][]string{{"write", "/etc/passwd", "clobbered"}, {"rm", "/etc/passwd"}, {"mkdir", "/newdir"},
		{"write", "/newfile", "x"}, {"rm", "/bin/cat"}}
	b := e.newBundle([]string{"true"}, func(s *specsSpec) { s.Root.Readonly = false })
	before := treeSum(t, b.rootfs())
	for _, st := range steps {
		b.spec.Process.Args = append([]string{"/bin/probe"}, st...)
		b.save(t)
		e.moat("run", "--bundle", b.dir, e.id())
	}
	if after := treeSum(t, b.rootfs()); after != before {
		t.Fatalf("the image changed under the memory overlay")
	}
	// Inside, the changes were real while the container lived.
	out := e.runProbe([]string{"try", "read", "/etc/passwd"}, func(s *specsSpec) { s.Root.Readonly = false })
	if !strings.Contains(out, `"ok":true`) {
		t.Errorf("a fresh container does not see the image's /etc/passwd: %s", out)
	}
	b.spec.Annotations = map[string]string{"moat.overlay": "none"}
	b.spec.Process.Args = []string{"/bin/probe", "write", "/landed", "yes"}
	b.save(t)
	e.moat("run", "--bundle", b.dir, e.id())
	if data, err := os.ReadFile(filepath.Join(b.rootfs(), "landed")); err != nil || string(data) != "yes" {
		t.Errorf("--overlay=none: the write did not reach the bundle (%q, %v)", data, err)
	}
}

// TestGoferSymlinksStayInside: symlinks in the image that point at host
// paths resolve inside the container, never on the host.
func TestGoferSymlinksStayInside(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"cat", "/shadowlink"})
	must(t, os.WriteFile(filepath.Join(b.rootfs(), "etc/shadow"), []byte("container shadow"), 0o600))
	must(t, os.Symlink("/etc/shadow", filepath.Join(b.rootfs(), "shadowlink")))
	must(t, os.Symlink("../../../../../../etc/shadow", filepath.Join(b.rootfs(), "uplink")))
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "container shadow" {
		t.Errorf("/shadowlink read %q, want the container's own /etc/shadow", out)
	}
	b.spec.Process.Args = []string{"/bin/probe", "cat", "/uplink"}
	b.save(t)
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "container shadow" {
		t.Errorf("/uplink read %q, want the container's own /etc/shadow", out)
	}
}

// TestGoferReadOnlyBindEveryPath: a read-only bind mount refuses every way
// of writing, and the host file is unchanged.
func TestGoferReadOnlyBindEveryPath(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "ro")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "file"), []byte("original"), 0o644))
	before := treeSum(t, src)
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_MKNOD", "CAP_SYS_ADMIN"}
	ops := [][]string{
		{"open", "/ro/file", "rdwr"}, {"try", "truncate", "/ro/file", "0"}, {"try", "write", "/ro/file", "x"},
		{"try", "rename", "/tmp/x", "/ro/file"}, {"try", "link", "/ro/file", "/ro/link"},
		{"try", "mknod", "/ro/dev", "c", "1", "3"}, {"try", "chmod", "/ro/file", "4777"},
		{"try", "setxattr", "/ro/file", "user.x", "y"}, {"try", "unlink", "/ro/file"}, {"try", "mkdir", "/ro/d"},
	}
	for _, op := range ops {
		out := e.runProbe(op, func(s *specsSpec) {
			bindMount(s, src, "/ro", "ro")
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
		})
		if strings.Contains(out, `"ok":true`) {
			t.Errorf("%v succeeded on a read-only bind mount: %s", op, out)
		}
	}
	if after := treeSum(t, src); after != before {
		t.Fatal("the host's read-only source changed")
	}
}

// TestGoferDevicesAndSetuid: a device node made in the overlay cannot be
// opened, and a setuid binary from the image gives no privileges.
func TestGoferDevicesAndSetuid(t *testing.T) {
	needGofer(t)
	needSubIDs(t, "runs the setuid binary as container uid 1000")
	e := newEnv(t)
	caps := []string{"CAP_MKNOD", "CAP_DAC_OVERRIDE"}
	b := e.newBundle([]string{"open", "/null2", "rdwr"}, func(s *specsSpec) {
		s.Root.Readonly = false
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	})
	// Make the node and open it in one container (the overlay is per
	// container): mknod through exec, then open.
	id := e.id()
	b.spec.Process.Args = []string{"/bin/probe", "hold", "30"}
	b.save(t)
	e.moat("run", "-d", "--bundle", b.dir, id)
	mk := e.moat("exec", "--cap", "CAP_MKNOD", id, "/bin/probe", "try", "mknod", "/null2", "c", "1", "3")
	open := e.moat("exec", "--cap", "CAP_DAC_OVERRIDE", id, "/bin/probe", "open", "/null2", "rdwr")
	if strings.Contains(mk, `"ok":true`) && strings.Contains(open, `"ok":true`) {
		t.Errorf("a device node made in the overlay could be opened: %s", open)
	}
	e.moat("delete", "--force", id)
	// setuid root binary in the image, run as uid 1000.
	b = e.newBundle([]string{"id"}, func(s *specsSpec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.Args = []string{"/bin/suid", "id"}
	})
	must(t, copyFile(probeBin, filepath.Join(b.rootfs(), "bin/suid"), 0o755))
	must(t, os.Chmod(filepath.Join(b.rootfs(), "bin/suid"), 0o4755))
	if out := e.moat("run", "--bundle", b.dir, e.id()); !strings.Contains(out, `"euid":1000`) {
		t.Errorf("setuid binary from the image raised privileges: %s", out)
	}
}

// TestGoferInvisible: the gofer is not in the container's pid namespace, so
// the container can neither see nor signal it.
func TestGoferInvisible(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	out := e.runProbe([]string{"ls", "/proc"})
	var pids []string
	for _, f := range strings.Fields(out) {
		if _, err := strconv.Atoi(f); err == nil {
			pids = append(pids, f)
		}
	}
	if len(pids) != 1 || pids[0] != "1" {
		t.Errorf("the container sees processes %v; want only its own (1)", pids)
	}
}

// TestGoferMountinfoHidesHost: the container's mountinfo shows nothing of
// the host's layout: the memory overlay's layers are named relative to the
// sandbox's own tmpfs (they showed the bundle's path, lowerdir=/…/rootfs/…),
// and the gofer's trees are FUSE mounts rooted at "/".
func TestGoferMountinfoHidesHost(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	b := e.newBundle([]string{"mounts"}, func(s *specsSpec) { s.Root.Readonly = false })
	out := e.moat("run", "--bundle", b.dir, e.id())
	if !strings.Contains(out, " overlay ") {
		t.Fatalf("no overlay root in the container's mountinfo:\n%s", out)
	}
	for _, host := range []string{b.dir, e.dir, e.root} {
		if strings.Contains(out, host) {
			t.Errorf("the container's mountinfo names the host path %s:\n%s", host, out)
		}
	}
}

// TestGoferProcUnreachable: a container in the host's pid namespace, with
// the file-server capabilities Docker grants by default, cannot open the
// gofer's /proc files: its descriptors are the host's files.
func TestGoferProcUnreachable(t *testing.T) {
	needGofer(t)
	needRoot(t, "a container in the host's pid namespace")
	e := newEnv(t)
	_, b := holding(e)
	gofer := findGofer(t, b.dir)
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"}
	// (Listing /proc/PID/fd is allowed to root; following its links is what
	// ptrace access guards.)
	paths := []string{"root", "cwd"}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", gofer))
	must(t, err)
	for _, fd := range fds {
		paths = append(paths, "fd/"+fd.Name())
	}
	for _, p := range paths {
		var r struct {
			OK   bool   `json:"ok"`
			Name string `json:"name"`
		}
		e.runJSON(&r, []string{"open", fmt.Sprintf("/proc/%d/%s", gofer, p), "rdonly|nonblock"}, func(s *specsSpec) {
			s.Linux.Namespaces = s.Linux.Namespaces[1:] // no pid namespace: the host's /proc
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, caps...)
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, caps...)
			s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, caps...)
		})
		if r.OK {
			t.Errorf("the container opened the gofer's /proc/%d/%s", gofer, p)
		}
	}
}

// TestGoferKilledFailsClosed: kill -9 of the gofer under a read-heavy
// container: boot kills the container and exits non-zero within 2 s with
// "gofer exited" in the log, and nothing is left mounted or running (the
// suite's leak check). That the container's file operations then fail
// instead of hanging is checked in internal/gofer/fsys.
func TestGoferKilledFailsClosed(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	logFile := filepath.Join(e.dir, "moat.log")
	e.globals = append(e.globals, "--log", logFile)
	// A read-write bind mount: no long-lived page cache, so every read
	// goes to the gofer.
	src := filepath.Join(e.dir, "data")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644))
	b := e.newBundle([]string{"readloop", "/data/f", "60"}, func(s *specsSpec) { bindMount(s, src, "/data", "rw") })
	cmd := moatCmd(e, nil, "run", "--bundle", b.dir, e.id())
	bg := startBg(e, cmd)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(bg.out(), "ready") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	gofer := findGofer(t, b.dir)
	killed := time.Now()
	must(t, syscall.Kill(gofer, syscall.SIGKILL))
	r := bg.wait()
	if d := time.Since(killed); d > 2*time.Second {
		t.Errorf("moat run returned %s after the gofer died, want <= 2s", d)
	}
	if r.code == 0 {
		t.Errorf("moat run exited 0 after the gofer died\n%s", r)
	}
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "gofer exited") {
		t.Errorf("the log does not say the gofer exited:\n%s", data)
	}
}

// findGofer returns the pid of the gofer serving bundle (gofersOf),
// waiting for it to start.
func findGofer(t *testing.T, bundle string) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if g := gofersOf(bundle); len(g) > 0 {
			return g[0]
		}
	}
	t.Fatalf("no gofer for %s", bundle)
	return 0
}

// gofersOf lists the pids of per-container gofers of bundle: children of
// its boot, which a foreground run may host (the gofer's own flags name no
// bundle: it gets its part of the plan from boot; the shared gofer, which a
// boot may also have started, is not one).
func gofersOf(bundle string) []int {
	return pidsWhere(func(pid int, cl string) bool {
		if !strings.Contains(cl, " gofer ") || strings.Contains(cl, " --shared ") {
			return false
		}
		// Its boot: `moat boot`, or a foreground `moat run` that hosts it.
		b := cmdlineOf(ppidOf(pid))
		return strings.Contains(b, " boot ") && strings.Contains(b, "--bundle="+bundle+" ") ||
			strings.Contains(b, " run ") && strings.Contains(b, "--bundle "+bundle+" ")
	})
}

// pidsWhere lists the live processes whose pid and command line (as
// cmdlineOf gives it) match.
func pidsWhere(match func(pid int, cmdline string) bool) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err == nil && match(pid, cmdlineOf(pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// cmdlineOf is a process's command line, its arguments joined by spaces
// ("" if gone).
func cmdlineOf(pid int) string {
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(cl), "\x00", " ")
}

// TestGoferRenameRace: while containers are created, the host swaps a bind
// destination's parent with a symlink to a host directory (rename
// exchange). Every mount lands inside the container's root, never on the
// host, and the host directory is untouched.
func TestGoferRenameRace(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "marker"), []byte("m"), 0o644))
	victim := filepath.Join(e.dir, "victim")
	must(t, os.MkdirAll(victim, 0o755))
	b := e.newBundle([]string{"true"}, func(s *specsSpec) { bindMount(s, src, "/data/mnt", "ro") })
	data := filepath.Join(b.rootfs(), "data")
	must(t, os.MkdirAll(filepath.Join(data, "mnt"), 0o755))
	alt := filepath.Join(b.rootfs(), "alt")
	must(t, os.Symlink(victim, alt))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Renameat2(unix.AT_FDCWD, data, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE)
		}
	}()
	for i := 0; i < 15; i++ {
		e.run(nil, "run", "--bundle", b.dir, e.id())
	}
	close(stop)
	<-done
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Errorf("the host directory behind the symlink was written: %v", ents)
	}
	if m := mountsUnder(victim); m != "" {
		t.Errorf("something was mounted on the host: %s", m)
	}
}

func mountsUnder(dir string) string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, dir) {
			return l
		}
	}
	return ""
}

// TestFuseUnavailableError: without /dev/fuse access the error says so and
// points to --file-access=direct (run as an unprivileged user whose
// /dev/fuse is 0600; skipped where it is usable).
func TestFuseUnavailableError(t *testing.T) {
	needGofer(t)
	if unix.Access("/dev/fuse", unix.R_OK|unix.W_OK) == nil {
		t.Skip("SKIP (prerequisite for this negative test: /dev/fuse not accessible to this user)")
	}
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	e.fails("--file-access=direct", "run", "--bundle", b.dir, e.id())
}

// The gofer of a container whose trees are all read-only with long caches
// (the default memory overlay, no directory volumes) keeps only
// CAP_DAC_OVERRIDE: it creates, chowns and chmods nothing, and needs no
// CAP_SYS_ADMIN, which only FUSE passthrough of a tree that is opened could
// use. With a read-write bind mount it keeps the file-server capabilities.
func TestGoferCapabilities(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	rw := filepath.Join(e.dir, "rw")
	must(t, os.MkdirAll(rw, 0o755))
	const writer = 1<<unix.CAP_CHOWN | 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_FOWNER | 1<<unix.CAP_FSETID
	for _, tc := range []struct {
		name string
		bind bool
		want uint64
	}{
		{"read-only trees", false, 1 << unix.CAP_DAC_OVERRIDE},
		{"a read-write bind", true, writer},
	} {
		b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) {
			if tc.bind {
				bindMount(s, rw, "/rw", "rw")
			}
		})
		id := e.id()
		e.moat("run", "-d", "--bundle", b.dir, id)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", findGofer(t, b.dir)))
		must(t, err)
		for _, line := range strings.Split(string(status), "\n") {
			name, hex, ok := strings.Cut(line, ":\t")
			if !ok || (name != "CapEff" && name != "CapPrm" && name != "CapBnd") {
				continue
			}
			set, err := strconv.ParseUint(hex, 16, 64)
			must(t, err)
			// A read-write tree may be served with FUSE passthrough (real
			// root, a kernel that has it), which adds CAP_SYS_ADMIN.
			if tc.bind {
				set &^= 1 << unix.CAP_SYS_ADMIN
			}
			if set != tc.want {
				t.Errorf("%s: gofer %s = %#x, want %#x", tc.name, name, set, tc.want)
			}
		}
		e.moat("delete", "--force", id)
	}
}

// TestGoferBindSeesHostChanges: a read-write bind mount can change on the
// host while the container runs, so the gofer caches it only briefly: a
// rewritten file, a new entry and a removed one are seen inside within a
// few seconds (its attribute and entry timeouts are 1 s), listings too.
func TestGoferBindSeesHostChanges(t *testing.T) {
	e := newEnv(t)
	dir, bind := sharedDir(e)
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("v1"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "gone"), nil, 0o644))
	id, _ := holding(e, bind)
	if out := e.moat("exec", id, "probe", "cat", "/shared/f"); out != "v1" {
		t.Fatalf("read %q, want v1", out)
	}
	if out := strings.TrimSpace(e.moat("exec", id, "probe", "ls", "/shared")); out != "f\ngone" {
		t.Fatalf("listing %q", out)
	}
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("version 2"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "new"), nil, 0o644))
	must(t, os.Remove(filepath.Join(dir, "gone")))
	deadline := time.Now().Add(5 * time.Second)
	for {
		data := e.moat("exec", id, "probe", "cat", "/shared/f")
		list := strings.TrimSpace(e.moat("exec", id, "probe", "ls", "/shared"))
		if data == "version 2" && list == "f\nnew" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the host's changes the container still reads %q and lists %q", data, list)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGoferImageXattrs: under the memory overlay the image shows no extended
// attributes (the gofer refuses them all, so that the overlay's per-lookup
// questions cost no round trip and the image cannot steer the overlay);
// copy-up still works and attributes set in the container stick. Without
// the overlay the image's attributes are served.
func TestGoferImageXattrs(t *testing.T) {
	needGofer(t)
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) { s.Root.Readonly = false })
	f := filepath.Join(b.rootfs(), "xf")
	must(t, os.WriteFile(f, []byte("x"), 0o644))
	if err := unix.Setxattr(f, "user.k", []byte("image"), 0); err != nil {
		t.Skipf("SKIP (missing prerequisite: user xattrs on the bundle's file system): %v", err)
	}
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	if out := e.moat("exec", id, "probe", "try", "getxattr", "/xf", "user.k"); strings.Contains(out, `"ok":true`) {
		t.Errorf("the image's attribute is shown under the overlay: %s", out)
	}
	for _, op := range [][]string{{"chmod", "/xf", "600"}, {"setxattr", "/xf", "user.n", "mine"}} {
		if out := e.moat(append([]string{"exec", id, "probe", "try"}, op...)...); !strings.Contains(out, `"ok":true`) {
			t.Errorf("%v in the container: %s", op, out)
		}
	}
	if out := e.moat("exec", id, "probe", "try", "getxattr", "/xf", "user.n"); !strings.Contains(out, `"data":"mine"`) {
		t.Errorf("an attribute set in the container: %s", out)
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(f, "user.k", buf); err != nil || string(buf[:n]) != "image" {
		t.Errorf("the image's attribute changed: %q %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(f, "user.n", buf); err == nil {
		t.Errorf("the container's attribute reached the image")
	}
	b.spec.Annotations = map[string]string{"moat.overlay": "none"}
	b.spec.Process.Args = []string{"/bin/probe", "try", "getxattr", "/xf", "user.k"}
	b.save(t)
	if out := e.moat("run", "--bundle", b.dir, e.id()); !strings.Contains(out, `"data":"image"`) {
		t.Errorf("--overlay=none: the image's attribute is not served: %s", out)
	}
}
