package e2e

// Security tests: each plays an attacker who is root inside the container
// (with the default capabilities) and checks the host is out of reach.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// strayFiles opens host files and directories at high descriptor numbers
// of moat without --preserve-fds: nothing may carry them into the
// container. The directory sits at fd 3 and fd 42.
func strayFiles(e *env) []*os.File {
	e.t.Helper()
	dir, err := os.Open(e.dir)
	must(e.t, err)
	e.t.Cleanup(func() { dir.Close() })
	extra := make([]*os.File, 40)
	extra[0], extra[39] = dir, dir
	extra[20] = tempFiles(e, "stray-file")[0]
	return extra
}

func TestNoLeakedFds(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"fds"})
	r := runMoatWith(e, strayFiles(e), nil, "run", "--bundle", b.dir, e.id())
	if r.code != 0 {
		t.Fatalf("run: %s", r)
	}
	checkPreserved(t, fdsOf(t, r.stdout))
	id, _ := holding(e)
	r = runMoatWith(e, strayFiles(e), nil, "exec", id, "probe", "fds")
	if r.code != 0 {
		t.Fatalf("exec: %s", r)
	}
	checkPreserved(t, fdsOf(t, r.stdout))
}

// checkCwdContained: a run with a /proc/self/fd/N cwd either is refused by
// moat or leaves the process in a directory inside the container.
func checkCwdContained(t *testing.T, r result, cwd string) {
	t.Helper()
	if r.code == 0 {
		if !strings.HasPrefix(r.stdout, "/") || strings.Contains(r.stdout, "unreachable") {
			t.Errorf("cwd %s: process runs in %q", cwd, r.stdout)
		}
		return
	}
	if !strings.HasPrefix(r.stderr, "moat ") {
		t.Errorf("cwd %s: moat did not refuse it, the process started and failed: %s", cwd, r)
	}
}

// TestCwdLeakedFd is CVE-2024-21626: a working directory that names a
// descriptor (/proc/self/fd/N) must not resolve to a host directory held by
// moat's helpers while they set the process up.
func TestCwdLeakedFd(t *testing.T) {
	e := newEnv(t)
	stray := strayFiles(e)
	for n := 3; n <= 44; n++ {
		cwd := "/proc/self/fd/" + strconv.Itoa(n)
		b := e.newBundle([]string{"cwd"}, func(s *specsSpec) { s.Process.Cwd = cwd })
		r := runMoatWith(e, stray, nil, "run", "--bundle", b.dir, e.id())
		checkCwdContained(t, r, cwd)
	}
	id, _ := holding(e)
	for n := 3; n <= 44; n++ {
		cwd := "/proc/self/fd/" + strconv.Itoa(n)
		r := runMoatWith(e, stray, nil, "exec", "--cwd", cwd, id, "probe", "cwd")
		checkCwdContained(t, r, "exec "+cwd)
	}
	if ents, _ := os.ReadDir(e.root); len(ents) != 1 {
		t.Errorf("state root %v: refused runs left state", ents)
	}
}

// TestInitRunsFromSealedCopy is CVE-2019-5736: before start the container
// init is moat's helper, and it never runs from the host binary's path: as
// real root through a read-only overlay of the binary's directory that is
// attached nowhere (its /proc/<pid>/exe reads "/moat"), otherwise from a
// sealed memfd copy.
// Either way nothing can be written to moat through /proc/<pid>/exe.
func TestInitRunsFromSealedCopy(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	pid := int(e.state(id)["pid"].(float64))
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, err := os.Readlink(exe)
	must(t, err)
	before, err := os.ReadFile(moatBin)
	must(t, err)
	if !rootless {
		got, err := os.ReadFile(exe)
		must(t, err)
		if target != "/"+filepath.Base(moatBin) || !bytes.Equal(got, before) {
			t.Errorf("init helper executes %q, want moat through a detached read-only overlay (/%s)", target, filepath.Base(moatBin))
		}
	} else if !strings.HasPrefix(target, "/memfd:moat") {
		t.Errorf("init helper executes %q, want the sealed memfd copy", target)
	}
	for _, flags := range []int{os.O_WRONLY, os.O_RDWR | os.O_TRUNC} {
		f, err := os.OpenFile(exe, flags, 0)
		if err == nil {
			_, werr := f.Write([]byte("overwrite"))
			f.Close()
			if werr == nil {
				t.Errorf("wrote to the init helper's executable (open flags %#x)", flags)
			}
		} else if !errors.Is(err, unix.ETXTBSY) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) {
			t.Errorf("open %s for writing: %v, want ETXTBSY, EACCES, EPERM or EROFS", exe, err)
		}
	}
	if after, _ := os.ReadFile(moatBin); !bytes.Equal(before, after) {
		t.Error("the moat binary changed")
	}
	e.moat("start", id)
	if target, _ := os.Readlink(exe); !strings.HasSuffix(target, "/bin/probe") {
		t.Errorf("after start /proc/%d/exe is %q, want the probe", pid, target)
	}
	e.moat("delete", "--force", id)
}

type tryResult struct {
	OK    bool   `json:"ok"`
	Name  string `json:"name"`
	Error string `json:"error"`
	Data  string `json:"data"`
}

// tryInCtr runs `probe ARGS...` (a try/open/syscall command) by exec.
func tryInCtr(e *env, id string, args ...string) tryResult {
	e.t.Helper()
	var r tryResult
	execJSON(e, &r, []string{id}, args...)
	return r
}

// TestInitHelperUnreachable: a process exec'd into a created container
// (pid 1 is still moat's helper, holding host descriptors) can neither
// ptrace it nor open what it holds.
func TestInitHelperUnreachable(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"})
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	var sc struct{ Name string }
	execJSON(e, &sc, []string{id}, "syscall", "ptrace", "16", "1") // PTRACE_ATTACH
	if sc.Name != "EPERM" {
		t.Errorf("ptrace attach to the init helper: %+v, want EPERM", sc)
	}
	paths := []string{"/proc/1/exe", "/proc/1/cwd", "/proc/1/root", "/proc/1/environ", "/proc/1/mem"}
	for _, fd := range strings.Fields(e.moat("exec", id, "probe", "ls", "/proc/1/fd")) {
		paths = append(paths, "/proc/1/fd/"+fd)
	}
	for _, p := range paths {
		if r := tryInCtr(e, id, "open", p, "rdonly"); r.OK {
			t.Errorf("the container opened %s of the init helper", p)
		}
	}
	if r := tryInCtr(e, id, "open", "/proc/1/exe", "wronly"); r.OK {
		t.Error("the container opened the init helper's executable for writing")
	}
	e.moat("delete", id)
}

func TestHostInvisible(t *testing.T) {
	e := newEnv(t)
	if got := numeric(e.runProbe([]string{"ls", "/proc"})); !slices.Equal(got, []string{"1"}) {
		t.Errorf("the container process sees pids %v, want only itself", got)
	}
	if got := strings.Fields(e.runProbe([]string{"ls", "/"})); !slices.Equal(got, []string{"bin", "dev", "etc", "proc", "sys", "tmp"}) {
		t.Errorf("container / has %v", got)
	}
	id, _ := holding(e)
	// An exec'd process sees init and itself, nothing of moat.
	if pids := numeric(e.moat("exec", id, "probe", "ls", "/proc")); len(pids) != 2 || pids[0] != "1" {
		t.Errorf("exec sees pids %v, want init and itself", pids)
	}
	if cl := e.moat("exec", id, "probe", "cat", "/proc/1/cmdline"); cl != "/bin/probe\x00hold\x00600\x00" {
		t.Errorf("container pid 1 is %q, want the container process", cl)
	}
}

func numeric(ls string) []string {
	var out []string
	for _, f := range strings.Fields(ls) {
		if _, err := strconv.Atoi(f); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// roFixture is a host directory and file bound read-only into a container.
type roFixture struct {
	dir, file string
}

func newROFixture(e *env) (*roFixture, func(*specsSpec)) {
	dir := filepath.Join(e.dir, "ro")
	must(e.t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	must(e.t, os.WriteFile(filepath.Join(dir, "data"), []byte("original"), 0o644))
	file := filepath.Join(e.dir, "rofile")
	must(e.t, os.WriteFile(file, []byte("original"), 0o644))
	fx := &roFixture{dir: dir, file: file}
	return fx, func(s *specsSpec) {
		bindMount(s, dir, "/ro", "ro")
		bindMount(s, file, "/rofile", "ro")
	}
}

// roAttacks are write attempts on the read-only mounts, each a probe command.
var roAttacks = [][]string{
	{"open", "/ro/data", "rdwr"},
	{"open", "/ro/data", "wronly|trunc"},
	{"open", "/ro/new", "wronly|creat"},
	{"try", "write", "/ro/data", "x"},
	{"try", "append", "/ro/data", "x"},
	{"try", "truncate", "/ro/data", "0"},
	{"try", "rename", "/ro/data", "/ro/renamed"},
	{"try", "rename", "/tmp/src", "/ro/data"},
	{"try", "link", "/ro/data", "/ro/link"},
	{"try", "symlink", "data", "/ro/sym"},
	{"try", "mknod", "/ro/fifo", "p"},
	{"try", "mkdir", "/ro/dir"},
	{"try", "unlink", "/ro/data"},
	{"try", "rmdir", "/ro/sub"},
	{"try", "chmod", "/ro/data", "777"},
	{"try", "chown", "/ro/data", "1", "1"},
	{"try", "setxattr", "/ro/data", "user.moat", "x"},
	{"try", "write", "/proc/self/root/ro/data", "x"},
	{"try", "write", "/tmp/link-to-ro", "x"},
	{"try", "write", "/rofile", "x"},
	{"try", "truncate", "/rofile", "0"},
	{"try", "chmod", "/rofile", "777"},
	{"try", "setxattr", "/rofile", "user.moat", "x"},
	{"syscall", "mount", "none", "/ro", "none", "0x1020", "0"}, // MS_REMOUNT|MS_BIND: back to rw
	{"syscall", "umount2", "/ro", "2"},
}

func TestReadonlyBindMount(t *testing.T) {
	e := newEnv(t)
	fx, mnt := newROFixture(e)
	id, _ := holding(e, mnt)
	e.moat("exec", id, "probe", "write", "/tmp/src", "attacker")
	e.moat("exec", id, "probe", "try", "symlink", "/ro/data", "/tmp/link-to-ro")
	for _, a := range roAttacks {
		var r tryResult
		var sc struct{ Ret int }
		out := e.moat(append([]string{"exec", id, "probe"}, a...)...)
		decodeJSON(t, out, &r)
		decodeJSON(t, out, &sc)
		if r.OK || (a[0] == "syscall" && sc.Ret == 0) {
			t.Errorf("probe %v succeeded on a read-only mount: %s", a, out)
		}
	}
	fx.checkUnchanged(t)
}

func (fx *roFixture) checkUnchanged(t *testing.T) {
	t.Helper()
	for _, p := range []string{filepath.Join(fx.dir, "data"), fx.file} {
		data, err := os.ReadFile(p)
		st, serr := os.Stat(p)
		if err != nil || string(data) != "original" || serr != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("host file %s changed: %q %v %v", p, data, err, st.Mode())
		}
		if _, err := unix.Getxattr(p, "user.moat", make([]byte, 16)); err == nil {
			t.Errorf("host file %s got an xattr", p)
		}
	}
	var names []string
	ents, _ := os.ReadDir(fx.dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"data", "sub"}) {
		t.Errorf("host directory now holds %v", names)
	}
}

// TestSymlinkMountDestination: a mount destination through a symlink of the
// image that points outside the root stays inside the root.
func TestSymlinkMountDestination(t *testing.T) {
	e := newEnv(t)
	name := fmt.Sprintf("moat-escape-%d-%d", os.Getpid(), idSeq.Add(1))
	hostPath := filepath.Join("/etc", name)
	t.Cleanup(func() { os.RemoveAll(hostPath) })
	src := filepath.Join(e.dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	b := e.newBundle([]string{"mounts"}, func(s *specsSpec) {
		s.Mounts = append(s.Mounts,
			specsTmpfs("/rel/"+name+"/t"), specsTmpfs("/abs/"+name+"/a"))
		bindMount(s, src, "/rel/"+name+"/b", "rw")
	})
	must(t, os.Symlink("../../../../../../../../etc", filepath.Join(b.rootfs(), "rel")))
	must(t, os.Symlink("/etc", filepath.Join(b.rootfs(), "abs")))
	out := e.moat("run", "--bundle", b.dir, e.id())
	if _, err := os.Lstat(hostPath); err == nil {
		t.Errorf("a mount through a symlink created host %s", hostPath)
	}
	for _, d := range []string{"t", "a", "b"} {
		if !strings.Contains(out, " /etc/"+name+"/"+d+" ") {
			t.Errorf("mount %s is not at /etc/%s/%s inside the container:\n%s", d, name, d, out)
		}
		if _, err := os.Stat(filepath.Join(b.rootfs(), "etc", name, d)); err != nil {
			t.Errorf("mount point not made inside the root: %v", err)
		}
	}
}

func specsTmpfs(dst string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: []string{"size=64k"}}
}

func TestMaskedPaths(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list"} {
		r := tryInCtr(e, id, "try", "read", p)
		if _, err := os.Stat(p); err != nil && r.Name == "ENOENT" {
			continue // this kernel has none: nothing to mask
		}
		if !r.OK || r.Data != "" {
			t.Errorf("masked %s: %+v, want readable and empty", p, r)
		}
	}
	if out := e.moat("exec", id, "probe", "ls", "/sys/firmware"); out != "" {
		t.Errorf("masked /sys/firmware lists %q", out)
	}
	if r := tryInCtr(e, id, "try", "write", "/proc/kcore", "x"); r.OK {
		t.Error("wrote to masked /proc/kcore")
	}
}

func TestReadonlyKernelFilesystems(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	for _, a := range [][]string{
		{"try", "mkdir", "/sys/moat"},
		{"try", "write", "/sys/kernel/uevent_helper", "/evil"},
		{"try", "mkdir", "/sys/fs/cgroup/moat"},
		{"try", "write", "/proc/sys/kernel/hostname", "evil"},
		{"try", "write", "/proc/sys/kernel/core_pattern", "|/evil"},
		{"try", "write", "/proc/sysrq-trigger", "h"},
	} {
		if r := tryInCtr(e, id, a...); r.OK {
			t.Errorf("probe %v succeeded", a)
		} else if a[2] == "/sys/moat" && r.Name != "EROFS" {
			t.Errorf("probe %v: %s, want EROFS (sysfs read-only)", a, r.Name)
		}
	}
}

func TestReadonlyRootCannotBeRemounted(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	if r := tryInCtr(e, id, "try", "write", "/newfile", "x"); r.OK || r.Name != "EROFS" {
		t.Errorf("write to the read-only root: %+v, want EROFS", r)
	}
	for _, flags := range []string{"0x20", "0x1020"} { // MS_REMOUNT, MS_REMOUNT|MS_BIND
		var sc struct{ Ret int }
		var r tryResult
		out := e.moat("exec", id, "probe", "syscall", "mount", "none", "/", "none", flags, "0")
		decodeJSON(t, out, &sc)
		decodeJSON(t, out, &r)
		if sc.Ret == 0 || r.Name != "EPERM" {
			t.Errorf("remount / with flags %s: %s, want EPERM", flags, out)
		}
	}
	if r := tryInCtr(e, id, "try", "write", "/newfile", "x"); r.OK {
		t.Error("the root became writable")
	}
}
