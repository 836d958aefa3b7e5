package initproc

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// These tests cover the pure helpers of the init process only: nothing here
// mounts, pivots or changes credentials.

func writeFile(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, filepath.Join(a, "prog"), 0o644) // not executable: skipped in PATH
	progB := writeFile(t, filepath.Join(b, "prog"), 0o755)
	cwdProg := writeFile(t, filepath.Join(dir, "cwd", "tool"), 0o755)
	relBin := writeFile(t, filepath.Join(dir, "cwd", "bin", "rel"), 0o755)
	plain := writeFile(t, filepath.Join(dir, "plain"), 0o600)
	os.MkdirAll(filepath.Join(b, "dirprog"), 0o755)

	for _, tc := range []struct {
		name, file, path, cwd, want string
	}{
		{"absolute", progB, "", "/", progB},
		{"relative with slash", "./tool", "/nonexistent", filepath.Join(dir, "cwd"), cwdProg},
		{"relative subdir", "bin/rel", "", filepath.Join(dir, "cwd"), relBin},
		{"PATH search skips non-executable", "prog", a + ":" + b, "/", progB},
		{"PATH order", "prog", b + ":" + a, "/", progB},
		{"empty PATH element is cwd", "tool", "/nonexistent::" + b, filepath.Join(dir, "cwd"), cwdProg},
		{"relative PATH element", "rel", "bin", filepath.Join(dir, "cwd"), relBin},
		{"system binary", "sh", "/usr/bin:/bin", "/", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.file, tc.path, tc.cwd)
			if err != nil {
				t.Fatalf("lookPath(%q, %q, %q): %v", tc.file, tc.path, tc.cwd, err)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if !filepath.IsAbs(got) {
				t.Errorf("got relative path %q", got)
			}
		})
	}

	for _, tc := range []struct {
		name, file, path, want string
	}{
		{"non-executable by path", plain, "", "not executable"},
		{"directory by path", dir, "", "is a directory"},
		{"missing by path", filepath.Join(dir, "nope"), "", "no such file"},
		{"only a directory in PATH", "dirprog", b, "executable file not found in $PATH"},
		{"only non-executable in PATH", "prog", a, "executable file not found in $PATH"},
		{"missing in PATH", "no-such-program-moat", "/usr/bin:/bin", "executable file not found in $PATH"},
		{"empty PATH", "sh", "", "executable file not found in $PATH"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.file, tc.path, "/")
			if err == nil {
				t.Fatalf("lookPath(%q) = %q, want an error", tc.file, got)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error %q lacks %q or the file name", err, tc.want)
			}
		})
	}
}

func TestPathOf(t *testing.T) {
	def := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, def},
		{[]string{"HOME=/root", "TERM=xterm"}, def},
		{[]string{"PATH=/bin"}, "/bin"},
		{[]string{"PATH=/first", "A=1", "PATH=/second"}, "/second"},
		{[]string{"MYPATH=/x", "PATHX=/y"}, def},
		{[]string{"PATH="}, ""},
	} {
		if got := pathOf(tc.env); got != tc.want {
			t.Errorf("pathOf(%q) = %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestWithHome(t *testing.T) {
	env := []string{"PATH=/bin", "HOME=/custom"}
	if got := withHome(env, 0); !reflect.DeepEqual(got, env) {
		t.Errorf("HOME already set: %q", got)
	}
	// A uid with no /etc/passwd entry gets HOME=/ (as runc).
	const noSuchUID = 2147480000
	env = make([]string, 1, 4)
	env[0] = "PATH=/bin"
	got := withHome(env, noSuchUID)
	if want := []string{"PATH=/bin", "HOME=/"}; !reflect.DeepEqual(got, want) {
		t.Errorf("withHome = %q, want %q", got, want)
	}
	// The caller's slice is not written through its spare capacity.
	if env[:2][1] != "" {
		t.Errorf("withHome wrote into the caller's array: %q", env[:2])
	}
	if got := withHome(nil, noSuchUID); !reflect.DeepEqual(got, []string{"HOME=/"}) {
		t.Errorf("withHome(nil) = %q", got)
	}
}

func TestSysctlPath(t *testing.T) {
	for in, want := range map[string]string{
		"net.ipv4.ip_forward":              "net/ipv4/ip_forward",
		"kernel.shmmax":                    "kernel/shmmax",
		"fs.mqueue.msg_max":                "fs/mqueue/msg_max",
		"net.ipv4.conf.all.route_localnet": "net/ipv4/conf/all/route_localnet",
		"kernel":                           "kernel",
	} {
		if got := sysctlPath(in); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The doc comment of sysctlPath promises that a key already in path form
// (with "/") is kept, dots then being literal (an interface named eth0.100).
func TestSysctlPathSlashFormKept(t *testing.T) {
	in := "net/ipv4/conf/eth0.100/forwarding"
	if got := sysctlPath(in); got != in {
		t.Errorf("sysctlPath(%q) = %q, want it unchanged", in, got)
	}
}

func TestCleanDest(t *testing.T) {
	for in, want := range map[string]string{
		"":              "/",
		"/":             "/",
		"proc":          "/proc",
		"/dev/pts/":     "/dev/pts",
		"//a//b/":       "/a/b",
		"/a/./b":        "/a/b",
		"/../../etc":    "/etc",
		"a/../../../..": "/",
		"/x/../y/..":    "/",
	} {
		if got := cleanDest(in); got != want {
			t.Errorf("cleanDest(%q) = %q, want %q", in, got, want)
		}
	}
}

func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	var st, parent unix.Stat_t
	if unix.Stat(p, &st) != nil || unix.Stat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func TestMountPointOf(t *testing.T) {
	cases := map[string]string{
		"/":                       "/",
		"/proc":                   "/proc",
		"/proc/self":              "/proc",
		"/proc/self/fd/0":         "/proc",
		"/procfoo":                "/",
		"/definitely/not/mounted": "/",
	}
	if isMountPoint(t, "/sys") {
		cases["/sys/x"] = "/sys"
	}
	if isMountPoint(t, "/sys/fs/cgroup") {
		cases["/sys/fs/cgroup/system.slice"] = "/sys/fs/cgroup"
		cases["/sys/fs/cgroupx"] = "/sys"
	}
	for in, want := range cases {
		got, err := mountPointOf(in)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("mountPointOf(%q) = %q, want %q", in, got, want)
		}
	}
	// The answer for a temporary directory is a real mount point that
	// contains it.
	dir := t.TempDir()
	mp, err := mountPointOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mp != "/" && !isMountPoint(t, mp) {
		t.Errorf("mountPointOf(%q) = %q, which is not a mount point", dir, mp)
	}
	if !strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/") {
		t.Errorf("mountPointOf(%q) = %q, not a prefix", dir, mp)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		"/plain/path":        "/plain/path",
		`/with\040space`:     "/with space",
		`/tab\011here`:       "/tab\there",
		`/new\012line`:       "/new\nline",
		`/back\134slash`:     `/back\slash`,
		`/lit\134040eral`:    `/lit\040eral`,
		`\040\040`:           "  ",
		`/unknown\777escape`: `/unknown\777escape`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHierarchy(t *testing.T) {
	for _, tc := range []struct {
		h        hierarchy
		subsys   string
		ctrlKey  string
		comments string
	}{
		{hierarchy{"/sys/fs/cgroup", "cgroup2", "rw,nsdelegate,memory_recursiveprot"}, "", "", "unified"},
		{hierarchy{"/sys/fs/cgroup/memory", "cgroup", "rw,memory"}, "memory", "memory", ""},
		{hierarchy{"/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"}, "cpu,cpuacct", "cpu,cpuacct", "co-mount"},
		{hierarchy{"/sys/fs/cgroup/net_cls,net_prio", "cgroup", "ro,net_cls,net_prio"}, "net_cls,net_prio", "net_cls,net_prio", ""},
		{hierarchy{"/sys/fs/cgroup/systemd", "cgroup", "rw,name=systemd"}, "none,name=systemd", "systemd", "named"},
	} {
		if tc.h.fstype == "cgroup" {
			if got := tc.h.subsystems(); got != tc.subsys {
				t.Errorf("%+v.subsystems() = %q, want %q", tc.h, got, tc.subsys)
			}
		}
		if got := tc.h.controllerKey(); got != tc.ctrlKey {
			t.Errorf("%+v.controllerKey() = %q, want %q", tc.h, got, tc.ctrlKey)
		}
	}
}

func TestHostHierarchies(t *testing.T) {
	hs, err := hostHierarchies()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.fstype != "cgroup" && h.fstype != "cgroup2" {
			t.Errorf("non-cgroup entry %+v", h)
		}
		if !filepath.IsAbs(h.mountpoint) || h.super == "" {
			t.Errorf("malformed entry %+v", h)
		}
		var sfs unix.Statfs_t
		if err := unix.Statfs(h.mountpoint, &sfs); err == nil {
			if magic := int64(sfs.Type); magic != unix.CGROUP2_SUPER_MAGIC && magic != unix.CGROUP_SUPER_MAGIC && magic != unix.TMPFS_MAGIC {
				t.Errorf("%s has filesystem magic %#x", h.mountpoint, magic)
			}
		}
	}
	var sfs unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &sfs) == nil && int64(sfs.Type) == unix.CGROUP2_SUPER_MAGIC {
		found := false
		for _, h := range hs {
			found = found || (h.mountpoint == "/sys/fs/cgroup" && h.fstype == "cgroup2")
		}
		if !found {
			t.Errorf("unified /sys/fs/cgroup not found in %+v", hs)
		}
	}
}

func TestToCapSet(t *testing.T) {
	if s := toCapSet(nil); s != 0 {
		t.Errorf("empty = %#x", s)
	}
	s := toCapSet([]string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE", "CAP_BOGUS", "CAP_KILL"})
	want := capSet(1<<unix.CAP_CHOWN | 1<<unix.CAP_KILL | 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_CHECKPOINT_RESTORE)
	if s != want {
		t.Errorf("toCapSet = %#x, want %#x", s, want)
	}
	if last := lastCap(); last < unix.CAP_CHECKPOINT_RESTORE || last > 63 {
		t.Errorf("lastCap = %d", last)
	}
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil && strings.TrimSpace(string(data)) != strconv.Itoa(lastCap()) {
		t.Errorf("lastCap = %d, kernel says %s", lastCap(), data)
	}
}

func TestDeviceMode(t *testing.T) {
	fm := func(m os.FileMode) *os.FileMode { return &m }
	for _, tc := range []struct {
		d    specs.LinuxDevice
		want uint32
	}{
		{specs.LinuxDevice{Type: "c"}, unix.S_IFCHR | 0o666},
		{specs.LinuxDevice{Type: "u"}, unix.S_IFCHR | 0o666},
		{specs.LinuxDevice{Type: "b"}, unix.S_IFBLK | 0o666},
		{specs.LinuxDevice{Type: "p"}, unix.S_IFIFO | 0o666},
		{specs.LinuxDevice{Type: "c", FileMode: fm(0o620)}, unix.S_IFCHR | 0o620},
		{specs.LinuxDevice{Type: "b", FileMode: fm(0o20660)}, unix.S_IFBLK | 0o660}, // type bits in fileMode are dropped
		{specs.LinuxDevice{Type: "c", FileMode: fm(0o4755)}, unix.S_IFCHR | 0o4755},
	} {
		got, err := deviceMode(tc.d)
		if err != nil || got != tc.want {
			t.Errorf("deviceMode(%+v) = %#o, %v; want %#o", tc.d, got, err, tc.want)
		}
	}
	for _, typ := range []string{"", "x", "C", "s"} {
		if _, err := deviceMode(specs.LinuxDevice{Type: typ}); err == nil {
			t.Errorf("deviceMode(type %q) accepted", typ)
		}
	}
}

func TestReplaceDevice(t *testing.T) {
	saved := append([]specs.LinuxDevice{}, defaultDevices...)
	devs := append([]specs.LinuxDevice{}, defaultDevices...)
	devs = replaceDevice(devs, specs.LinuxDevice{Path: "/dev//null/", Type: "c", Major: 99, Minor: 1})
	devs = replaceDevice(devs, specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229})
	if len(devs) != len(defaultDevices)+1 {
		t.Fatalf("%d devices, want %d", len(devs), len(defaultDevices)+1)
	}
	if devs[0].Major != 99 || devs[0].Path != "/dev//null/" {
		t.Errorf("/dev/null not replaced in place: %+v", devs[0])
	}
	if last := devs[len(devs)-1]; last.Path != "/dev/fuse" {
		t.Errorf("new device not appended: %+v", last)
	}
	if !reflect.DeepEqual(defaultDevices, saved) {
		t.Error("defaultDevices modified")
	}
	for _, p := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"} {
		found := false
		for _, d := range defaultDevices {
			found = found || d.Path == p
		}
		if !found {
			t.Errorf("default device %s missing", p)
		}
	}
}

func TestDevNeedsSetup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		want   bool
	}{
		{"no mounts", nil, true},
		{"tmpfs /dev", []specs.Mount{{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"}}, true},
		{"bind of a subdirectory", []specs.Mount{{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm"}}, true},
		{"bind /dev", []specs.Mount{{Destination: "/dev", Type: "bind", Source: "/dev"}}, false},
		{"bind /dev/", []specs.Mount{{Destination: "/dev/", Type: "bind", Source: "/dev"}}, false},
		// A bind mount is also any type with a bind/rbind option
		// (spec.IsBind; runc's own rootless spec writes type "none").
		{"rbind /dev with type none", []specs.Mount{{Destination: "/dev", Type: "none", Source: "/dev", Options: []string{"rbind", "nosuid"}}}, false},
		{"bind option /dev with empty type", []specs.Mount{{Destination: "/dev", Source: "/dev", Options: []string{"bind"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := devNeedsSetup(&specs.Spec{Mounts: tc.mounts}); got != tc.want {
				t.Errorf("devNeedsSetup = %v, want %v (init would populate a bind of the host's /dev)", got, tc.want)
			}
		})
	}
}

func TestWithoutListenEnv(t *testing.T) {
	in := []string{"A=1", "LISTEN_FDS=2", "B=2", "LISTEN_PID=9", "LISTEN_FDNAMES=x"}
	got := withoutListenEnv(in)
	if want := []string{"A=1", "B=2", "LISTEN_FDNAMES=x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("withoutListenEnv = %q, want %q", got, want)
	}
	if in[1] != "LISTEN_FDS=2" {
		t.Error("input modified")
	}
}

func TestFdPath(t *testing.T) {
	f, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := fdPath(f)
	if !strings.HasPrefix(p, "/proc/self/fd/") {
		t.Fatalf("fdPath = %q", p)
	}
	if target, err := os.Readlink(p); err != nil || target != "/" {
		t.Errorf("%s -> %q, %v", p, target, err)
	}
}
