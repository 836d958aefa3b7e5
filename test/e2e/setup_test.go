package e2e

// What init builds before the container process runs: mounts, /dev,
// masked and read-only paths, namespaces, process attributes, seccomp.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ---- helpers shared by setup, hooks and cgroup tests ----

// opResult is the JSON of `probe try` and `probe open`.
type opResult struct {
	OK    bool    `json:"ok"`
	Errno int     `json:"errno"`
	Error string  `json:"error"`
	Data  *string `json:"data"`
}

// tryIn runs `probe try OP ARGS...` in a new container.
func tryIn(e *env, op []string, mutate ...func(*specs.Spec)) opResult {
	e.t.Helper()
	var r opResult
	e.runJSON(&r, append([]string{"try"}, op...), mutate...)
	return r
}

// wantErrno checks a `probe try` result failed with errno want (0: success).
func wantErrno(t *testing.T, what string, r opResult, want syscall.Errno) {
	t.Helper()
	switch {
	case want == 0 && !r.OK:
		t.Errorf("%s failed: %s (errno %d)", what, r.Error, r.Errno)
	case want != 0 && r.OK:
		t.Errorf("%s succeeded; want %v", what, want)
	case want != 0 && r.Errno != int(want):
		t.Errorf("%s: errno %d (%s), want %d (%v)", what, r.Errno, r.Error, int(want), want)
	}
}

// mountEntry is one line of /proc/PID/mountinfo.
type mountEntry struct {
	point    string
	opts     []string // per-mount options
	optional []string // shared:N, master:N, ...
	fstype   string
	super    []string // super-block options
}

func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(s, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 6 || len(qf) < 3 {
			continue
		}
		out = append(out, mountEntry{point: unescapeOctal(pf[4]), opts: strings.Split(pf[5], ","),
			optional: pf[6:], fstype: qf[0], super: strings.Split(qf[2], ",")})
	}
	return out
}

func unescapeOctal(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// mountAt returns the topmost mount at point and its index, or -1.
func mountAt(ms []mountEntry, point string) (mountEntry, int) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].point == point {
			return ms[i], i
		}
	}
	return mountEntry{}, -1
}

// hasOpt reports whether the option list holds opt (or a key=value opt).
func hasOpt(opts []string, opt string) bool { return slices.Contains(opts, opt) }

// hasTag reports whether optional fields hold a tag such as "shared".
func hasTag(m mountEntry, tag string) bool {
	for _, f := range m.optional {
		if strings.HasPrefix(f, tag+":") {
			return true
		}
	}
	return false
}

// initPidOf is the container init's host pid from `moat state`.
func initPidOf(e *env, id string) int {
	e.t.Helper()
	pid, ok := e.state(id)["pid"].(float64)
	if !ok || pid <= 0 {
		e.t.Fatalf("state of %s has no pid: %v", id, e.state(id))
	}
	return int(pid)
}

// createHeld creates (and with start, starts) a container holding for a
// minute and returns its id and init pid.
func createHeld(e *env, start bool, mutate ...func(*specs.Spec)) (string, int) {
	e.t.Helper()
	b := e.newBundle([]string{"hold", "60"}, mutate...)
	id := e.id()
	e.moat("create", "--bundle", b.dir, id)
	if start {
		e.moat("start", id)
	}
	return id, initPidOf(e, id)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	return strings.TrimSpace(string(data))
}

func ptr[T any](v T) *T { return &v }

// ---- mounts ----

func TestSetupMountsInOrder(t *testing.T) {
	e := newEnv(t)
	ms := parseMountinfo(e.runProbe([]string{"mounts"}, func(s *specsSpec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"size=1m", "mode=0710", "nodev"}})
	}))
	want := []struct{ point, fstype string }{
		{"/proc", "proc"}, {"/dev", "tmpfs"}, {"/dev/pts", "devpts"}, {"/dev/shm", "tmpfs"},
		{"/dev/mqueue", "mqueue"}, {"/sys", "sysfs"}, {"/tmp", "tmpfs"}, {"/scratch", "tmpfs"},
	}
	last := -1
	for _, w := range want {
		m, i := mountAt(ms, w.point)
		if i < 0 {
			t.Errorf("no mount at %s", w.point)
			continue
		}
		if m.fstype != w.fstype {
			t.Errorf("%s is %s, want %s", w.point, m.fstype, w.fstype)
		}
		if i < last {
			t.Errorf("%s was mounted out of order", w.point)
		}
		last = i
	}
	sys, _ := mountAt(ms, "/sys")
	if !hasOpt(sys.opts, "ro") || !hasOpt(sys.opts, "nosuid") || !hasOpt(sys.opts, "noexec") {
		t.Errorf("/sys options %v, want ro,nosuid,noexec", sys.opts)
	}
	checkSuper(t, ms, "/dev/shm", "size=65536k") // mode=1777 is tmpfs's default: not listed
	checkSuper(t, ms, "/dev/pts", "mode=620", "ptmxmode=666")
	// devpts shows its gid as the initial user namespace sees it; with a
	// single-ID map there is no gid 5, and moat mounts it without gid=.
	switch pts, _ := mountAt(ms, "/dev/pts"); {
	case singleIDMap:
		if slices.ContainsFunc(pts.super, func(o string) bool { return strings.HasPrefix(o, "gid=") }) {
			t.Errorf("/dev/pts super options %v: a gid= although gid 5 is not mapped", pts.super)
		}
	default:
		checkSuper(t, ms, "/dev/pts", fmt.Sprintf("gid=%d", hostGID(t, 5)))
	}
	checkSuper(t, ms, "/scratch", "size=1024k", "mode=710")
	if sc, _ := mountAt(ms, "/scratch"); !hasOpt(sc.opts, "nodev") {
		t.Errorf("/scratch options %v, want nodev", sc.opts)
	}
	var st struct{ Mode, Type string }
	e.runJSON(&st, []string{"stat", "/dev/ptmx"})
	if st.Type != "symlink" {
		t.Errorf("/dev/ptmx is a %s, want a symlink to pts/ptmx", st.Type)
	}
}

func checkSuper(t *testing.T, ms []mountEntry, point string, opts ...string) {
	t.Helper()
	m, i := mountAt(ms, point)
	for _, o := range opts {
		if i >= 0 && !hasOpt(m.super, o) {
			t.Errorf("%s super options %v lack %s", point, m.super, o)
		}
	}
}

func TestSetupCgroupMount(t *testing.T) {
	limit := int64(48 << 20)
	withLimit := func(s *specsSpec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	}
	for _, tc := range []struct {
		name   string
		ownNS  bool
		mutate func(*specsSpec)
	}{
		{"cgroupns", true, withLimit},
		{"no-cgroupns", false, func(s *specsSpec) {
			withLimit(s)
			s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
				return n.Type == specs.CgroupNamespace
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			wantErrno(t, "write to /sys/fs/cgroup", tryIn(e, []string{"write", "/sys/fs/cgroup/pids/pids.max", "5"}, tc.mutate), unix.EROFS)
			if tc.ownNS {
				for _, l := range strings.Split(strings.TrimSpace(e.runProbe([]string{"cat", "/proc/self/cgroup"}, tc.mutate)), "\n") {
					if !strings.HasSuffix(l, ":/") {
						t.Errorf("/proc/self/cgroup line %q: the container's cgroup is not its root", l)
					}
				}
			}
			t.Run("limit", func(t *testing.T) {
				needCgroups(t, "the container's own memory cgroup with its limit")
				e := e.in(t)
				got := strings.TrimSpace(e.runProbe([]string{"cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}, tc.mutate))
				if got != strconv.FormatInt(limit, 10) {
					t.Errorf("/sys/fs/cgroup/memory shows limit %q, want the container's %d", got, limit)
				}
			})
		})
	}
}

func TestSetupBindMountOptions(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("host data"), 0o644))
	must(t, copyFile(probeBin, filepath.Join(src, "exe"), 0o755))
	mounts := func(s *specsSpec) {
		bindMount(s, src, "/ro", "ro")
		bindMount(s, src, "/rw", "rw")
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/flags", Type: "bind", Source: src,
			Options: []string{"bind", "nosuid", "noexec", "nodev"}})
	}
	ms := parseMountinfo(e.runProbe([]string{"mounts"}, mounts))
	for point, opts := range map[string][]string{"/ro": {"ro"}, "/rw": {"rw"}, "/flags": {"nosuid", "noexec", "nodev"}} {
		m, i := mountAt(ms, point)
		for _, o := range opts {
			if i < 0 || !hasOpt(m.opts, o) {
				t.Errorf("%s options %v lack %s", point, m.opts, o)
			}
		}
	}
	if got := e.runProbe([]string{"cat", "/ro/f"}, mounts); got != "host data" {
		t.Errorf("/ro/f reads %q", got)
	}
	wantErrno(t, "write to ro bind", tryIn(e, []string{"write", "/ro/new", "x"}, mounts), unix.EROFS)
	wantErrno(t, "write to rw bind", tryIn(e, []string{"write", "/rw/new", "written"}, mounts), 0)
	if data, _ := os.ReadFile(filepath.Join(src, "new")); string(data) != "written" {
		t.Errorf("write through rw bind reached the host as %q", data)
	}
	b := e.newBundle([]string{"run", "/flags/exe", "true"}, mounts)
	if r := e.run(nil, "run", "--bundle", b.dir, e.id()); r.code != 126 || !strings.Contains(r.stdout, `"errno":13`) {
		t.Errorf("exec from a noexec bind: want EACCES (exit 126)\n%s", r)
	}
}

func TestSetupBindPropagation(t *testing.T) {
	needRoot(t, "the test makes the shared host mount, and a mount under it, that propagation is about")
	e := newEnv(t)
	src := filepath.Join(e.dir, "shared-src")
	must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	// The source must be a shared mount for propagation to exist at all.
	must(t, unix.Mount(src, src, "", unix.MS_BIND, ""))
	t.Cleanup(func() { unix.Unmount(src, unix.MNT_DETACH) })
	must(t, unix.Mount("", src, "", unix.MS_SHARED, ""))
	bind := func(s *specsSpec, dst, prop string) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src,
			Options: []string{"rbind", "rw", prop}})
	}
	id, pid := createHeld(e, true, func(s *specsSpec) {
		bind(s, "/slave", "rslave")
		bind(s, "/shared", "rshared")
		bind(s, "/private", "rprivate")
	})
	must(t, unix.Mount("tmpfs", filepath.Join(src, "sub"), "tmpfs", 0, "size=1m"))
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	must(t, err)
	ms := parseMountinfo(string(data))
	for _, tc := range []struct {
		point, tag string
		receives   bool
	}{{"/slave", "master", true}, {"/shared", "shared", true}, {"/private", "", false}} {
		m, i := mountAt(ms, tc.point)
		if fileAccess == "gofer" {
			// With the gofer the container holds no host mount: its bind
			// is the gofer's FUSE mount, and nothing the host mounts
			// under the source reaches it, whatever the propagation.
			if i < 0 || m.fstype != "fuse.moat" {
				t.Errorf("%s: want the gofer's fuse.moat mount, got %+v", tc.point, m)
			}
			if _, j := mountAt(ms, tc.point+"/sub"); j >= 0 {
				t.Errorf("host mount under the source reached the container at %s/sub", tc.point)
			}
			continue
		}
		switch {
		case i < 0:
			t.Errorf("no mount at %s", tc.point)
		case tc.tag == "" && len(m.optional) > 0:
			t.Errorf("%s optional fields %v, want none (private)", tc.point, m.optional)
		case tc.tag != "" && !hasTag(m, tc.tag):
			t.Errorf("%s optional fields %v, want %s:N", tc.point, m.optional, tc.tag)
		}
		if _, j := mountAt(ms, tc.point+"/sub"); (j >= 0) != tc.receives {
			t.Errorf("host mount under the source propagated to %s/sub: %v, want %v", tc.point, j >= 0, tc.receives)
		}
	}
	e.moat("delete", "--force", id)
}

func TestSetupBindSingleFileAndNewDestination(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(e.dir, "hostfile")
	must(t, os.WriteFile(file, []byte("single file"), 0o644))
	mut := func(s *specsSpec) {
		bindMount(s, file, "/etc/bound", "ro")
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/new/deep/dir", Type: "tmpfs", Source: "tmpfs"})
	}
	if got := e.runProbe([]string{"cat", "/etc/bound"}, mut); got != "single file" {
		t.Errorf("/etc/bound reads %q", got)
	}
	ms := parseMountinfo(e.runProbe([]string{"mounts"}, mut))
	if m, i := mountAt(ms, "/new/deep/dir"); i < 0 || m.fstype != "tmpfs" {
		t.Errorf("no tmpfs at the new destination /new/deep/dir")
	}
	if m, i := mountAt(ms, "/etc/bound"); i < 0 || !hasOpt(m.opts, "ro") {
		t.Errorf("/etc/bound: not a read-only mount (%v)", m.opts)
	}
}

func TestSetupDestinationThroughSymlink(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "marker"), []byte("m"), 0o644))
	for _, link := range []string{"/etc", "../../../../../../../../etc"} {
		name := fmt.Sprintf("moat-e2e-%d", os.Getpid())
		b := e.newBundle([]string{"ls", "/etc/" + name}, func(s *specsSpec) {
			bindMount(s, src, "/x/"+name, "ro")
		})
		must(t, os.Symlink(link, filepath.Join(b.rootfs(), "x")))
		r := e.run(nil, "run", "--bundle", b.dir, e.id())
		if r.code != 0 || strings.TrimSpace(r.stdout) != "marker" {
			t.Errorf("symlink x -> %s: bind onto /x/%s is not at the container's /etc/%s\n%s", link, name, name, r)
		}
		if _, err := os.Lstat("/etc/" + name); err == nil {
			os.Remove("/etc/" + name)
			t.Errorf("symlink x -> %s: the mount destination was created in the host's /etc", link)
		}
		if _, err := os.Stat(filepath.Join(b.rootfs(), "etc", name)); err != nil {
			t.Errorf("symlink x -> %s: destination not created inside the rootfs: %v", link, err)
		}
	}
}

func TestSetupRootfsPropagation(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		prop, tag string
	}{{"", ""}, {"rprivate", ""}, {"shared", "shared"}, {"rshared", "shared"}} {
		ms := parseMountinfo(e.runProbe([]string{"mounts"}, func(s *specsSpec) { s.Linux.RootfsPropagation = tc.prop }))
		root, i := mountAt(ms, "/")
		switch {
		case i < 0:
			t.Errorf("rootfsPropagation %q: no / in mountinfo", tc.prop)
		case tc.tag == "" && hasTag(root, "shared"):
			t.Errorf("rootfsPropagation %q: / is shared (%v)", tc.prop, root.optional)
		case tc.tag != "" && !hasTag(root, tc.tag):
			t.Errorf("rootfsPropagation %q: / optional fields %v, want %s:N", tc.prop, root.optional, tc.tag)
		}
	}
}

// ---- root, masked and read-only paths ----

func TestSetupRootReadonly(t *testing.T) {
	e := newEnv(t)
	wantErrno(t, "write to a read-only root", tryIn(e, []string{"write", "/newfile", "x"}), unix.EROFS)
	wantErrno(t, "write to /tmp (tmpfs) under a read-only root", tryIn(e, []string{"write", "/tmp/x", "x"}), 0)
	// Writes reach the bundle with direct access, and with the gofer when
	// the memory overlay is turned off (runc semantics)...
	b := e.newBundle([]string{"write", "/newfile", "landed"}, func(s *specsSpec) {
		s.Root.Readonly = false
		s.Annotations = map[string]string{"moat.overlay": "none"}
	})
	e.moat("run", "--bundle", b.dir, e.id())
	if data, err := os.ReadFile(filepath.Join(b.rootfs(), "newfile")); err != nil || string(data) != "landed" {
		t.Errorf("write with root.readonly=false: bundle rootfs has %q (%v)", data, err)
	}
	if fileAccess != "gofer" {
		return
	}
	// ...but not through the default memory overlay, where they succeed
	// and vanish with the container.
	b = e.newBundle([]string{"write", "/newfile", "gone"}, func(s *specsSpec) { s.Root.Readonly = false })
	e.moat("run", "--bundle", b.dir, e.id())
	if _, err := os.Stat(filepath.Join(b.rootfs(), "newfile")); err == nil {
		t.Errorf("a write under the memory overlay reached the bundle's rootfs")
	}
}

func TestSetupMaskedAndReadonlyPaths(t *testing.T) {
	e := newEnv(t)
	mut := func(s *specsSpec) {
		s.Root.Readonly = false
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/etc/secret", "/etc/secretdir", "/etc/missing")
		s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/etc/rodir")
	}
	b := e.newBundle([]string{"true"}, mut)
	etc := filepath.Join(b.rootfs(), "etc")
	must(t, os.WriteFile(filepath.Join(etc, "secret"), []byte("password"), 0o644))
	for _, d := range []string{"secretdir", "rodir"} {
		must(t, os.MkdirAll(filepath.Join(etc, d), 0o755))
		must(t, os.WriteFile(filepath.Join(etc, d, "file"), []byte("content"), 0o644))
	}
	run := func(args ...string) string {
		b.spec.Process.Args = append([]string{"/bin/probe"}, args...)
		b.save(t)
		return e.moat("run", "--bundle", b.dir, e.id())
	}
	for _, f := range []string{"/etc/secret", "/proc/timer_list"} {
		var r opResult
		must(t, json.Unmarshal([]byte(run("try", "read", f)), &r))
		if !r.OK || r.Data == nil || *r.Data != "" {
			t.Errorf("masked file %s: read %+v, want empty content", f, r)
		}
	}
	for _, d := range []string{"/etc/secretdir", "/sys/firmware"} {
		if out := run("ls", d); out != "" {
			t.Errorf("masked directory %s lists %q, want nothing", d, out)
		}
	}
	for _, tc := range []struct {
		path string
		want syscall.Errno
	}{{"/etc/rodir/file", unix.EROFS}, {"/proc/sys/kernel/hostname", unix.EROFS}, {"/etc/other", 0}} {
		var r opResult
		must(t, json.Unmarshal([]byte(run("try", "write", tc.path, "x")), &r))
		wantErrno(t, "write "+tc.path, r, tc.want)
	}
}

// ---- /dev ----

func TestSetupDevices(t *testing.T) {
	e := newEnv(t)
	if rootless && fileAccess == "gofer" {
		// The rootless gofer's FUSE mounts admit only processes in the
		// container's user namespace: the host cannot look through
		// /proc/<pid>/root, so look from inside.
		devicesFromInside(e)
		return
	}
	id, pid := createHeld(e, false)
	dev := fmt.Sprintf("/proc/%d/root/dev/", pid)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	must(t, err)
	ms := parseMountinfo(string(data))
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		// Root makes the nodes; a user namespace may not, so rootless
		// moat bind-mounts the host's: the same inode, its mode and owner.
		if !rootless {
			checkDevice(t, dev+d.name, d.major, d.minor, 0o666, 0)
		} else {
			var host unix.Stat_t
			must(t, unix.Stat("/dev/"+d.name, &host))
			st := checkDevice(t, dev+d.name, d.major, d.minor, host.Mode&0o7777, host.Uid)
			if st.Dev != host.Dev || st.Ino != host.Ino {
				t.Errorf("/dev/%s is not the host's node", d.name)
			}
		}
		if _, i := mountAt(ms, "/dev/"+d.name); (i >= 0) != rootless {
			t.Errorf("/dev/%s is a mount point: %v; want %v (a bind of the host's node only rootless)", d.name, i >= 0, rootless)
		}
	}
	for link, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		if got, err := os.Readlink(dev + link); err != nil || got != target {
			t.Errorf("/dev/%s -> %q (%v), want %q", link, got, err, target)
		}
	}
	e.moat("delete", id)
	// The device cgroup lets the container use them.
	wantErrno(t, "write /dev/full", tryIn(e, []string{"write", "/dev/full", "x"}), unix.ENOSPC)

	// linux.devices: a node of its own numbers, mode and owner.
	moatnull := func(path string, mode os.FileMode) func(*specsSpec) {
		return func(s *specsSpec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: path, Type: "c", Major: 1, Minor: 3,
				FileMode: ptr(mode), UID: ptr(uint32(1000)), GID: ptr(uint32(1001))}}
		}
	}
	if rootless {
		// Without mknod only host nodes can be bound, at the same path:
		// a device the host lacks fails create clearly, nothing left.
		b := e.newBundle([]string{"hold", "60"}, moatnull("/dev/sub/moatnull", 0o620))
		id := e.id()
		e.fails("/dev/sub/moatnull", "create", "--bundle", b.dir, id)
		assertNothingLeft(e, id)
		return
	}
	id, pid = createHeld(e, false, moatnull("/dev/sub/moatnull", 0o620))
	st := checkDevice(t, fmt.Sprintf("/proc/%d/root/dev/sub/moatnull", pid), 1, 3, 0o620, 1000)
	if st.Gid != 1001 {
		t.Errorf("/dev/sub/moatnull: gid %d, want 1001", st.Gid)
	}
	e.moat("delete", id)
	wantErrno(t, "write /dev/moatnull as uid 1000", tryIn(e, []string{"write", "/dev/moatnull", "x"}, func(s *specsSpec) {
		s.Process.User = specs.User{UID: 1000, GID: 1001}
		moatnull("/dev/moatnull", 0o600)(s)
	}), 0)
}

// devicesFromInside checks the default devices and /dev links with exec.
func devicesFromInside(e *env) {
	t := e.t
	id, _ := createHeld(e, true)
	defer e.moat("delete", "--force", id)
	for _, d := range []struct {
		name         string
		major, minor int
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		out := e.moat("exec", id, "/bin/probe", "stat", "/dev/"+d.name)
		var raw map[string]any
		must(t, json.Unmarshal([]byte(out), &raw))
		typ, _ := raw["type"].(string)
		maj, _ := raw["rdev_major"].(float64)
		min, _ := raw["rdev_minor"].(float64)
		if typ != "char" || int(maj) != d.major || int(min) != d.minor {
			t.Errorf("/dev/%s inside: %s", d.name, out)
		}
	}
	for link, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"} {
		if got := strings.TrimSpace(e.moat("exec", id, "/bin/probe", "readlink", "/dev/"+link)); got != target {
			t.Errorf("/dev/%s -> %q, want %q", link, got, target)
		}
	}
	wantErrno(t, "write /dev/full", tryIn(e, []string{"write", "/dev/full", "x"}), unix.ENOSPC)
}

// checkDevice checks a character device node as the host sees it.
func checkDevice(t *testing.T, path string, major, minor, mode, uid uint32) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Errorf("%s: %v", path, err)
		return st
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != major || unix.Minor(st.Rdev) != minor ||
		st.Mode&0o7777 != mode || st.Uid != uid {
		t.Errorf("%s: mode %o rdev %d:%d uid %d; want char %d:%d mode %o uid %d", path, st.Mode,
			unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, major, minor, mode, uid)
	}
	return st
}
