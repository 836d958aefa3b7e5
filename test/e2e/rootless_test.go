package e2e

// Rootless (issue 5): the whole lifecycle as the calling user, ownership
// of what the container writes, what it cannot write, and the clear errors
// of what an unprivileged caller may not do. Every test runs in every tier
// and asserts what is right for it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// hostUIDOf is the real uid of a host process.
func hostUIDOf(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			must(t, err)
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// TestUnprivilegedLifecycle: run -d, exec, exec -t through a console
// socket, pause (or its clear error without cgroups), kill, delete --force
// and run -t, as the calling user.
func TestUnprivilegedLifecycle(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"signals", "--ready", "/tmp/ready"}, func(s *specsSpec) {
		bindMount(s, e.dir, "/tmp", "rw")
	})
	id := e.id()
	out, wait := e.runDetachedOutput(b, id)
	waitFile(t, filepath.Join(e.dir, "ready"))
	pid := initPidOf(e, id)
	if uid := hostUIDOf(t, pid); uid != os.Getuid() {
		t.Errorf("container process runs as host uid %d, want the caller's %d", uid, os.Getuid())
	}
	if own := ns(t, pid, "user") != ns(t, os.Getpid(), "user"); own != rootless {
		t.Errorf("container in a user namespace of its own: %v, want %v", own, rootless)
	}

	var ident struct{ UID, GID int }
	execJSON(e, &ident, []string{id}, "id")
	if ident.UID != 0 || ident.GID != 0 {
		t.Errorf("exec: id %+v, want root in the container", ident)
	}
	sock, recv := consoleSocket(e)
	p := startMoat(e, nil, "exec", "-t", "--console-socket", sock, id, "probe", "tty")
	output := readAll(t, recv())
	if r := p.wait(); r.code != 0 {
		t.Fatalf("exec -t --console-socket: %s", r)
	}
	checkTty(t, decodeTty(t, output()), 0, 0)

	if !rootless || cgroupWritable() {
		e.moat("pause", id)
		if st := e.status(id); st != "paused" {
			t.Errorf("after pause: status %s", st)
		}
		e.moat("resume", id)
	} else {
		// No delegated cgroup: pause and update say why, and the container
		// keeps running.
		// Said as `moat doctor` says it (no delegated cgroup v2).
		if r := e.fails("cgroups are unavailable", "pause", id); !strings.Contains(r.stderr, "moat doctor") ||
			!strings.Contains(r.stderr, "delegat") {
			t.Errorf("pause without cgroups does not say what moat doctor says:\n%s", r.stderr)
		}
		e.fails("cgroups are unavailable", "update", "--resources", writeResources(e, limits(64<<20, 32)), id)
		e.fails("cgroups are unavailable", "events", "--stats", id)
	}
	if st := e.status(id); st != "running" {
		t.Errorf("status %s, want running", st)
	}

	e.moat("kill", id, "USR1")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out(), "SIGUSR1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out(), "SIGUSR1") {
		t.Errorf("kill USR1 did not reach the container: %q", out())
	}
	e.moat("delete", "--force", id)
	wait()
	if !waitGone(pid, 10*time.Second) {
		t.Errorf("container process %d survived delete --force", pid)
	}
	e.fails("does not exist", "state", id)

	tty := e.newBundle([]string{"tty"}, func(s *specsSpec) { s.Process.Terminal = true })
	ttyOut, code := attached(e, "", "run", "--bundle", tty.dir, e.id())
	if code != 0 {
		t.Fatalf("run -t: exit %d: %q", code, ttyOut)
	}
	checkTty(t, decodeTty(t, ttyOut), 40, 120)
}

func writeResources(e *env, r *specs.LinuxResources) string {
	f := filepath.Join(e.dir, fmt.Sprintf("resources-%d.json", idSeq.Add(1)))
	data, err := json.Marshal(r)
	must(e.t, err)
	must(e.t, os.WriteFile(f, data, 0o644))
	return f
}

// TestResourceLimitsWithoutCgroups: without a writable cgroup the
// container runs without its limits, and create says so once.
func TestResourceLimitsWithoutCgroups(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"echo", "ran"}, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 32) })
	r := e.run(nil, "run", "--bundle", b.dir, e.id())
	if r.code != 0 || r.stdout != "ran\n" {
		t.Fatalf("run with resource limits: %s", r)
	}
	warnings := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "warning") {
			warnings++
			if !strings.Contains(l, "resource limits are not applied") || !strings.Contains(l, "cgroups are unavailable") {
				t.Errorf("warning %q does not say that and why the limits are not applied", l)
			}
		}
	}
	want := 0
	if rootless && !cgroupWritable() {
		want = 1
	}
	if warnings != want {
		t.Errorf("%d warnings, want %d:\n%s", warnings, want, r.stderr)
	}
}

// TestFileOwnership: what uid 0 and uid 1000 of the container create in a
// read-write bind of the caller's directory belongs on the host to the
// caller and to the mapped subordinate id (root: to 0 and 1000).
func TestFileOwnership(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "owned")
	must(t, os.Mkdir(dir, 0o777))
	must(t, os.Chmod(dir, 0o777)) // for uid 1000, whatever the umask
	must(t, os.WriteFile(filepath.Join(dir, "from-host"), []byte("x"), 0o644))
	bind := func(s *specsSpec) { bindMount(s, dir, "/shared", "rw") }
	check := func(t *testing.T, uid, gid uint32) {
		t.Helper()
		e := e.in(t)
		name := fmt.Sprintf("by-%d", uid)
		user := func(s *specsSpec) { bind(s); s.Process.User = specs.User{UID: uid, GID: gid} }
		e.runProbe([]string{"write", "/shared/" + name, "data"}, user)
		var st unix.Stat_t
		must(t, unix.Stat(filepath.Join(dir, name), &st))
		if wu, wg := hostUID(t, uid), hostGID(t, gid); st.Uid != wu || st.Gid != wg {
			t.Errorf("file made by container uid %d gid %d is owned on the host by %d:%d, want %d:%d", uid, gid, st.Uid, st.Gid, wu, wg)
		}
		var in struct{ UID, GID uint32 }
		e.runJSON(&in, []string{"stat", "/shared/" + name}, bind)
		if in.UID != uid || in.GID != gid {
			t.Errorf("inside, the file is owned by %d:%d, want %d:%d", in.UID, in.GID, uid, gid)
		}
	}
	check(t, 0, 0)
	// The caller's own file is root's inside.
	var in struct{ UID, GID uint32 }
	e.runJSON(&in, []string{"stat", "/shared/from-host"}, bind)
	if in.UID != 0 || in.GID != 0 {
		t.Errorf("the caller's file is owned by %d:%d inside, want 0:0", in.UID, in.GID)
	}
	t.Run("uid-1000", func(t *testing.T) {
		needSubIDs(t, "container uid and gid 1000")
		check(t, 1000, 1000)
	})
}

// foreignFile is a regular file, mode 0644, that the caller's containers
// must not write: rootless a root-owned host file (the caller cannot write
// it either); as root, one of the test's own, for a container whose user
// namespace maps root to an unprivileged id (root can write anything).
func foreignFile(t *testing.T, e *env) string {
	t.Helper()
	if !rootless {
		f := filepath.Join(e.dir, "root-owned")
		must(t, os.WriteFile(f, []byte("root's data\n"), 0o644))
		return f
	}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/hostname"} {
		var st unix.Stat_t
		if unix.Lstat(f, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Uid == 0 && st.Mode&0o7777 == 0o644 {
			return f
		}
	}
	t.Fatal("no root-owned 0644 file in /etc to bind")
	return ""
}

// TestCannotWriteForeignFiles: a host file the caller cannot write stays
// unwritable through a read-write bind mount, even for container root.
func TestCannotWriteForeignFiles(t *testing.T) {
	e := newEnv(t)
	file := foreignFile(t, e)
	before, err := os.ReadFile(file)
	must(t, err)
	var stBefore unix.Stat_t
	must(t, unix.Stat(file, &stBefore))
	mut := func(s *specsSpec) { bindMount(s, file, "/target", "rw") }
	if !rootless {
		// Container root is host uid 200000 here: traverse to the bundle.
		must(t, os.Chmod(e.dir, 0o755))
		mut = func(s *specsSpec) {
			bindMount(s, file, "/target", "rw")
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		}
	}
	b := e.newBundle([]string{"hold", "600"}, mut)
	must(t, os.Chmod(b.dir, 0o755))
	// The mount point exists: root's mapped container root cannot create it.
	must(t, os.WriteFile(filepath.Join(b.rootfs(), "target"), nil, 0o644))
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	ms := parseMountinfo(e.moat("exec", id, "probe", "mounts"))
	if m, i := mountAt(ms, "/target"); i < 0 || !hasOpt(m.opts, "rw") {
		t.Errorf("/target is not a read-write mount: %+v", m)
	}
	// Its owner is not mapped: the overflow id inside.
	var st struct{ UID, GID uint32 }
	execJSON(e, &st, []string{id}, "stat", "/target")
	overflow := uint32(65534)
	if data, err := os.ReadFile("/proc/sys/kernel/overflowuid"); err == nil {
		n, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		overflow = uint32(n)
	}
	if st.UID != overflow {
		t.Errorf("inside, the foreign file's owner is %d, want the overflow uid %d", st.UID, overflow)
	}
	for _, a := range []struct {
		op   []string
		want string
	}{
		{[]string{"open", "/target", "wronly"}, "EACCES"},
		{[]string{"open", "/target", "rdwr"}, "EACCES"},
		{[]string{"try", "write", "/target", "x"}, "EACCES"},
		{[]string{"try", "append", "/target", "x"}, "EACCES"},
		{[]string{"try", "truncate", "/target", "0"}, "EACCES"},
		{[]string{"try", "chmod", "/target", "666"}, "EPERM"},
		{[]string{"try", "chown", "/target", "0", "0"}, "EPERM"},
	} {
		if r := tryInCtr(e, id, a.op...); r.OK || r.Name != a.want {
			t.Errorf("probe %v on the foreign file: %+v, want %s", a.op, r, a.want)
		}
	}
	e.moat("delete", "--force", id)
	after, err := os.ReadFile(file)
	must(t, err)
	var stAfter unix.Stat_t
	must(t, unix.Stat(file, &stAfter))
	if !bytes.Equal(before, after) || stAfter.Mode != stBefore.Mode || stAfter.Uid != stBefore.Uid || stAfter.Mtim != stBefore.Mtim {
		t.Errorf("%s changed: mode %o -> %o, uid %d -> %d, content equal %v", file,
			stBefore.Mode, stAfter.Mode, stBefore.Uid, stAfter.Uid, bytes.Equal(before, after))
	}
}

// TestMappingNotAllowed: linux.uidMappings/gidMappings an unprivileged
// caller may not use fail create, naming the mapping, and leave nothing;
// allowed ones are honoured. Root may map anything.
func TestMappingNotAllowed(t *testing.T) {
	e := newEnv(t)
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	own := func(id uint32) specs.LinuxIDMapping { return specs.LinuxIDMapping{ContainerID: 0, HostID: id, Size: 1} }
	userNS := func(uids, gids []specs.LinuxIDMapping) func(*specsSpec) {
		return func(s *specsSpec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings, s.Linux.GIDMappings = uids, gids
		}
	}
	type tc struct {
		name       string
		uids, gids []specs.LinuxIDMapping
		want       string // rootless error; "" = allowed
	}
	cases := []tc{
		{"own ids", []specs.LinuxIDMapping{own(uid)}, []specs.LinuxIDMapping{own(gid)}, ""},
		{"host uid 0", []specs.LinuxIDMapping{own(0)}, []specs.LinuxIDMapping{own(gid)},
			fmt.Sprintf("uid mapping 0-0 -> host 0-0 is neither your own uid %d", uid)},
		{"host gid 0", []specs.LinuxIDMapping{own(uid)}, []specs.LinuxIDMapping{own(0)},
			fmt.Sprintf("gid mapping 0-0 -> host 0-0 is neither your own gid %d", gid)},
		{"someone else's range", []specs.LinuxIDMapping{own(uid), {ContainerID: 1, HostID: 300000, Size: 1000}},
			[]specs.LinuxIDMapping{own(gid)}, "uid mapping 1-1000 -> host 300000-300999"},
	}
	if !singleIDMap && rootless {
		us, gs := subIDStart(t, "/etc/subuid"), subIDStart(t, "/etc/subgid")
		cases = append(cases,
			tc{"inside the subordinate range", []specs.LinuxIDMapping{own(uid), {ContainerID: 1, HostID: us, Size: 1000}},
				[]specs.LinuxIDMapping{own(gid), {ContainerID: 1, HostID: gs, Size: 1000}}, ""},
			tc{"past the subordinate range", []specs.LinuxIDMapping{own(uid), {ContainerID: 1, HostID: us + 65535, Size: 2}},
				[]specs.LinuxIDMapping{own(gid)}, fmt.Sprintf("uid mapping 1-2 -> host %d-%d", us+65535, us+65536)})
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			e := e.in(t)
			b := e.newBundle([]string{"hold", "60"}, userNS(c.uids, c.gids))
			id := e.id()
			if rootless && c.want != "" {
				failsOneLine(e, c.want, "create", "--bundle", b.dir, id)
				assertNothingLeft(e, id)
				return
			}
			e.moat("create", "--bundle", b.dir, id)
			pid := initPidOf(e, id)
			for _, m := range []struct {
				file string
				want []specs.LinuxIDMapping
			}{{"uid_map", c.uids}, {"gid_map", c.gids}} {
				var got []specs.LinuxIDMapping
				for _, l := range strings.Split(strings.TrimSpace(readTrim(t, fmt.Sprintf("/proc/%d/%s", pid, m.file))), "\n") {
					var mp specs.LinuxIDMapping
					fmt.Sscan(l, &mp.ContainerID, &mp.HostID, &mp.Size)
					got = append(got, mp)
				}
				if !slices.Equal(got, m.want) {
					t.Errorf("%s %v, want the spec's %v", m.file, got, m.want)
				}
			}
			e.moat("delete", "--force", id)
		})
	}
}

// TestForeignStateRoot: a state root owned by another user, or writable by
// others, is refused with a clear error, and nothing is created in it.
func TestForeignStateRoot(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"})
	foreign, owner := "/tmp", 0 // rootless: root's
	if !rootless {
		foreign, owner = filepath.Join(e.dir, "nobody"), 65534
		must(t, os.Mkdir(foreign, 0o700))
		must(t, os.Chown(foreign, owner, owner))
	}
	open := filepath.Join(e.dir, "open")
	must(t, os.Mkdir(open, 0o700))
	must(t, os.Chmod(open, 0o777))
	for _, c := range []struct{ root, want string }{
		{foreign, fmt.Sprintf("%s is owned by uid %d, not by you (uid %d): use --root", foreign, owner, os.Getuid())},
		{open, open + " is writable by group or others (mode 0777): chmod 700 it"},
	} {
		before, _ := os.ReadDir(c.root)
		for _, args := range [][]string{{"run", "--bundle", b.dir, e.id()}, {"list"}, {"state", "x"}} {
			r := startBg(e, exec.Command(moatBin, append(append([]string{"--root", c.root}, e.globals...), args...)...)).wait()
			if r.code == 0 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("moat --root %s %v: want a refusal saying %q\n%s", c.root, args, c.want, r)
			}
		}
		if after, _ := os.ReadDir(c.root); len(after) != len(before) {
			t.Errorf("refused state root %s: %d entries before, %d after", c.root, len(before), len(after))
		}
	}
}

// TestDefaultRootEnvironment: without --root, rootless state lives in
// $XDG_RUNTIME_DIR/moat, else in /tmp/moat-$UID (mode 0700, the caller's);
// root's in /run/moat either way.
func TestDefaultRootEnvironment(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"})
	xdg := filepath.Join(e.dir, "xdg")
	must(t, os.Mkdir(xdg, 0o700))
	for _, c := range []struct {
		name string
		env  []string
		xdg  string
	}{
		{"XDG_RUNTIME_DIR", append(environWithout("XDG_RUNTIME_DIR"), "XDG_RUNTIME_DIR="+xdg), xdg},
		{"no XDG_RUNTIME_DIR", environWithout("XDG_RUNTIME_DIR"), ""},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			e := e.in(t)
			root := defaultRoot(c.xdg)
			removeIfCreated(t, root)
			id := e.id()
			bare := func(args ...string) result {
				cmd := exec.Command(moatBin, append(append([]string{}, e.globals...), args...)...)
				cmd.Env = c.env
				return startBg(e, cmd).wait()
			}
			t.Cleanup(func() { bare("delete", "--force", id) })
			if r := bare("run", "-d", "--bundle", b.dir, id); r.code != 0 {
				t.Fatalf("run -d without --root: %s", r)
			}
			if _, err := os.Stat(filepath.Join(root, id, "state.json")); err != nil {
				t.Errorf("state not in %s: %v", root, err)
			}
			var st unix.Stat_t
			if err := unix.Stat(root, &st); err != nil || int(st.Uid) != os.Getuid() || st.Mode&0o077 != 0 {
				t.Errorf("%s: owner %d mode %o (%v), want the caller's, 0700", root, st.Uid, st.Mode&0o7777, err)
			}
			if r := bare("list", "-q"); !slices.Contains(strings.Fields(r.stdout), id) {
				t.Errorf("list without --root: %s", r)
			}
			if r := bare("delete", "--force", id); r.code != 0 {
				t.Errorf("delete --force without --root: %s", r)
			}
			if _, err := os.Stat(filepath.Join(root, id)); !os.IsNotExist(err) {
				t.Errorf("%s/%s after delete: %v", root, id, err)
			}
		})
	}
}
