package e2e

// What init builds before the container process runs: mounts, /dev,
// masked and read-only paths, namespaces, process attributes, seccomp.

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ---- process attributes ----

func TestSetupHostnameAndDomainname(t *testing.T) {
	e := newEnv(t)
	var got struct{ Hostname, Domainname string }
	e.runJSON(&got, []string{"hostname"}, func(s *specsSpec) { s.Domainname = "example.org" })
	if got.Hostname != "moat-test" || got.Domainname != "example.org" {
		t.Errorf("uname: %+v, want moat-test / example.org", got)
	}
}

func TestSetupSysctl(t *testing.T) {
	e := newEnv(t)
	hostFwd := readTrim(t, "/proc/sys/net/ipv4/ip_forward")
	hostShm := readTrim(t, "/proc/sys/kernel/shmmax")
	mut := func(s *specsSpec) {
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}
	}
	for key, want := range map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"} {
		if got := strings.TrimSpace(e.runProbe([]string{"sysctl", key}, mut)); got != want {
			t.Errorf("sysctl %s in the container: %q, want %q", key, got, want)
		}
	}
	if readTrim(t, "/proc/sys/net/ipv4/ip_forward") != hostFwd || readTrim(t, "/proc/sys/kernel/shmmax") != hostShm {
		t.Error("container sysctls changed the host's values")
	}
}

func TestSetupRlimits(t *testing.T) {
	e := newEnv(t)
	var got map[string][2]uint64
	e.runJSON(&got, []string{"rlimits"}, func(s *specsSpec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 100, Hard: 200},
			{Type: "RLIMIT_NPROC", Soft: 300, Hard: 400}}
	})
	if got["RLIMIT_NOFILE"] != [2]uint64{100, 200} || got["RLIMIT_NPROC"] != [2]uint64{300, 400} {
		t.Errorf("rlimits NOFILE %v NPROC %v, want [100 200] [300 400]", got["RLIMIT_NOFILE"], got["RLIMIT_NPROC"])
	}
}

func TestSetupOomScoreAdjAndUmask(t *testing.T) {
	e := newEnv(t)
	if got := strings.TrimSpace(e.runProbe([]string{"oomscore"}, func(s *specsSpec) { s.Process.OOMScoreAdj = ptr(500) })); got != "500" {
		t.Errorf("oom_score_adj %q, want 500", got)
	}
	for _, tc := range []struct {
		umask *uint32
		want  string
	}{{nil, "0022"}, {ptr(uint32(0o077)), "0077"}} {
		var got struct{ Umask string }
		e.runJSON(&got, []string{"umask"}, func(s *specsSpec) { s.Process.User.Umask = tc.umask })
		if got.Umask != tc.want {
			t.Errorf("umask %s, want %s", got.Umask, tc.want)
		}
	}
}

func TestSetupCwdAndEnv(t *testing.T) {
	e := newEnv(t)
	if got := strings.TrimSpace(e.runProbe([]string{"cwd"}, func(s *specsSpec) { s.Process.Cwd = "/tmp" })); got != "/tmp" {
		t.Errorf("cwd %q, want /tmp", got)
	}
	env := e.runProbe([]string{"env"}, func(s *specsSpec) {
		s.Process.Env = []string{"PATH=/bin", "FOO=bar baz", "EMPTY="}
	})
	for _, want := range []string{"PATH=/bin", "FOO=bar baz", "EMPTY=", "HOME=/root"} {
		if !slices.Contains(strings.Split(env, "\n"), want) {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	// Like runc, a missing cwd is created inside the root filesystem.
	out := e.runProbe([]string{"cwd"}, func(s *specsSpec) { s.Process.Cwd = "/does/not/exist" })
	if strings.TrimSpace(out) != "/does/not/exist" {
		t.Errorf("cwd %q, want /does/not/exist", out)
	}
	// A cwd that is a file cannot be entered: create fails, nothing left.
	b := e.newBundle([]string{"true"}, func(s *specsSpec) { s.Process.Cwd = "/bin/probe" })
	id := e.id()
	e.fails("cwd", "create", "--bundle", b.dir, id)
	e.fails("does not exist", "state", id)
}

func TestSetupUser(t *testing.T) {
	needSubIDs(t, "process.user uid 1000, gid 1001 and additionalGids 10 and 20 need them mapped")
	e := newEnv(t)
	var got struct {
		UID, GID, EUID, EGID int
		Groups               []int
	}
	e.runJSON(&got, []string{"id"}, func(s *specsSpec) {
		s.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{10, 20}}
	})
	slices.Sort(got.Groups)
	if got.UID != 1000 || got.EUID != 1000 || got.GID != 1001 || got.EGID != 1001 ||
		!slices.Contains(got.Groups, 10) || !slices.Contains(got.Groups, 20) || slices.Contains(got.Groups, 0) {
		t.Errorf("id: %+v, want uid 1000 gid 1001 groups [10 20]", got)
	}
}

func TestSetupCapabilities(t *testing.T) {
	e := newEnv(t)
	var got struct{ Names map[string][]string }
	e.runJSON(&got, []string{"caps"})
	if eff := slices.Sorted(slices.Values(got.Names["eff"])); !slices.Equal(eff, []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}) ||
		len(got.Names["amb"]) != 0 {
		t.Errorf("root with the default caps: eff %v amb %v", eff, got.Names["amb"])
	}
	t.Run("uid-1000", func(t *testing.T) {
		needSubIDs(t, "capabilities of a process.user uid 1000 need uid 1000 mapped")
		e := e.in(t)
		e.runJSON(&got, []string{"caps"}, func(s *specsSpec) {
			s.Process.User = specs.User{UID: 1000, GID: 1000}
			s.Process.Capabilities = &specs.LinuxCapabilities{
				Bounding:    []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"},
				Permitted:   []string{"CAP_CHOWN", "CAP_NET_RAW"},
				Effective:   []string{"CAP_CHOWN", "CAP_NET_RAW"},
				Inheritable: []string{"CAP_CHOWN", "CAP_NET_RAW"},
				Ambient:     []string{"CAP_NET_RAW"},
			}
		})
		// As uid 1000 only ambient capabilities survive execve into
		// permitted and effective.
		for set, want := range map[string][]string{
			"bnd": {"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"}, "inh": {"CAP_CHOWN", "CAP_NET_RAW"},
			"amb": {"CAP_NET_RAW"}, "prm": {"CAP_NET_RAW"}, "eff": {"CAP_NET_RAW"},
		} {
			have := slices.Sorted(slices.Values(got.Names[set]))
			if !slices.Equal(have, want) {
				t.Errorf("%s: %v, want %v", set, have, want)
			}
		}
	})
}

func TestSetupNoNewPrivileges(t *testing.T) {
	e := newEnv(t)
	for _, nnp := range []bool{true, false} {
		var got struct{ NNP int }
		e.runJSON(&got, []string{"status"}, func(s *specsSpec) { s.Process.NoNewPrivileges = nnp })
		if (got.NNP == 1) != nnp {
			t.Errorf("noNewPrivileges %v: NoNewPrivs %d", nnp, got.NNP)
		}
	}
}

func TestSetupPersonality(t *testing.T) {
	e := newEnv(t)
	var got struct{ Personality int }
	e.runJSON(&got, []string{"personality"}, func(s *specsSpec) {
		s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32}
	})
	if got.Personality&0xff != 0x0008 {
		t.Errorf("personality %#x, want PER_LINUX32 (0x8)", got.Personality)
	}
}

// ---- seccomp ----

// syscallIn runs `probe syscall ARGS...` in a container with profile p.
func syscallIn(e *env, p *specs.LinuxSeccomp, nnp bool, args ...string) (ret, errno int) {
	e.t.Helper()
	var r struct{ Ret, Errno int }
	e.runJSON(&r, append([]string{"syscall"}, args...), func(s *specsSpec) {
		s.Linux.Seccomp = p
		s.Process.NoNewPrivileges = nnp
	})
	return r.Ret, r.Errno
}

func TestSetupSeccompRules(t *testing.T) {
	e := newEnv(t)
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(38))},
		{Names: []string{"getppid"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 42, Op: specs.OpEqualTo}}},
		{Names: []string{"vhangup"}, Action: specs.ActKillProcess},
	}}
	for _, nnp := range []bool{true, false} {
		if _, errno := syscallIn(e, p, nnp, "mkdirat", "-100", "/tmp/d", "0755"); errno != 38 {
			t.Errorf("nnp %v: mkdirat errno %d, want 38 (errnoRet)", nnp, errno)
		}
	}
	if _, errno := syscallIn(e, p, true, "getppid", "42"); errno != int(unix.EPERM) {
		t.Errorf("getppid(42): errno %d, want EPERM", errno)
	}
	if _, errno := syscallIn(e, p, true, "getppid", "7"); errno != 0 {
		t.Errorf("getppid(7): errno %d, want success (condition not met)", errno)
	}
	var st struct{ Seccomp int }
	e.runJSON(&st, []string{"status"}, func(s *specsSpec) { s.Linux.Seccomp = p })
	if st.Seccomp != 2 {
		t.Errorf("Seccomp mode %d, want 2 (filter)", st.Seccomp)
	}
	b := e.newBundle([]string{"syscall", "vhangup"}, func(s *specsSpec) { s.Linux.Seccomp = p })
	if r := e.run(nil, "run", "--bundle", b.dir, e.id()); r.code != 128+int(unix.SIGSYS) {
		t.Errorf("SCMP_ACT_KILL_PROCESS: exit %d, want %d (SIGSYS)\n%s", r.code, 128+int(unix.SIGSYS), r)
	}
}

// goRuntimeSyscalls is enough for the probe (a Go program) to start, print
// and exit, plus execve for the runtime to start it.
var goRuntimeSyscalls = []string{
	"execve", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64", "getrlimit",
	"mmap", "munmap", "mprotect", "madvise", "brk", "mincore", "rt_sigaction", "rt_sigprocmask",
	"rt_sigreturn", "sigaltstack", "clone", "clone3", "futex", "gettid", "getpid", "tgkill", "kill",
	"sched_getaffinity", "sched_yield", "nanosleep", "clock_gettime", "clock_nanosleep", "openat",
	"open", "read", "write", "close", "fcntl", "fstat", "newfstatat", "readlinkat", "getrandom",
	"exit", "exit_group", "epoll_create1", "epoll_ctl", "epoll_pwait", "eventfd2", "pipe2", "uname",
	"capget", "capset", "prctl", "setuid", "setgid", "setgroups", "close_range", "getcwd", "lseek",
}

func TestSetupSeccompAllowlist(t *testing.T) {
	e := newEnv(t)
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{
		{Names: goRuntimeSyscalls, Action: specs.ActAllow},
	}}
	if _, errno := syscallIn(e, p, true, "getppid"); errno != int(unix.EPERM) {
		t.Errorf("getppid (not allowed): errno %d, want EPERM", errno)
	}
	if ret, errno := syscallIn(e, p, true, "getpid"); errno != 0 || ret != 1 {
		t.Errorf("getpid (allowed): ret %d errno %d, want 1", ret, errno)
	}
}

// ---- namespaces ----

func TestSetupNewNetworkNamespace(t *testing.T) {
	e := newEnv(t)
	if got := e.runProbe([]string{"ls", "/sys/class/net"}); got != "lo\n" {
		t.Errorf("network interfaces %q, want only lo", got)
	}
	flags, err := strconv.ParseUint(strings.TrimSpace(e.runProbe([]string{"cat", "/sys/class/net/lo/flags"})), 0, 32)
	if err != nil || flags&unix.IFF_UP == 0 {
		t.Errorf("lo flags %#x (%v): not up", flags, err)
	}
	dev := e.runProbe([]string{"cat", "/proc/net/dev"})
	if lines := strings.Split(strings.TrimSpace(dev), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "lo:") {
		t.Errorf("/proc/net/dev lists more than lo:\n%s", dev)
	}
}

func TestSetupJoinNetworkNamespaceByPath(t *testing.T) {
	needRoot(t, "ip netns add needs root, and a rootless container may not join a network namespace owned by the host's user namespace")
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("missing prerequisite: ip(8) from iproute2")
	}
	e := newEnv(t)
	name := fmt.Sprintf("moat-e2e-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	var st unix.Stat_t
	must(t, unix.Stat("/run/netns/"+name, &st))
	got := strings.TrimSpace(e.runProbe([]string{"readlink", "/proc/self/ns/net"}, func(s *specsSpec) {
		for i := range s.Linux.Namespaces {
			if s.Linux.Namespaces[i].Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = "/run/netns/" + name
			}
		}
	}))
	if want := fmt.Sprintf("net:[%d]", st.Ino); got != want {
		t.Errorf("container netns %q, want the joined %q", got, want)
	}
}

func TestSetupNamespacesDifferFromHost(t *testing.T) {
	e := newEnv(t)
	id, pid := createHeld(e, false)
	for _, n := range []string{"uts", "ipc", "pid", "net", "mnt", "cgroup"} {
		if ns(t, pid, n) == ns(t, os.Getpid(), n) {
			t.Errorf("container %s namespace is the host's", n)
		}
	}
	// The spec asks for no user namespace: root uses the host's, rootless
	// moat always makes one.
	if own := ns(t, pid, "user") != ns(t, os.Getpid(), "user"); own != rootless {
		t.Errorf("container has a user namespace of its own: %v, want %v", own, rootless)
	}
	e.moat("delete", id)
	shareUTSAndIPC := func(s *specsSpec) {
		s.Hostname = ""
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool {
			return n.Type == specs.UTSNamespace || n.Type == specs.IPCNamespace
		})
	}
	if rootless {
		// Only the owner of the host's IPC namespace (real root) may mount
		// mqueue for it: create fails clearly, and works without it.
		b := e.newBundle([]string{"hold", "60"}, shareUTSAndIPC)
		id := e.id()
		e.fails("mount mqueue on /dev/mqueue", "create", "--bundle", b.dir, id)
		assertNothingLeft(e, id)
		noMqueue := shareUTSAndIPC
		shareUTSAndIPC = func(s *specsSpec) {
			noMqueue(s)
			s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Type == "mqueue" })
		}
	}
	id, pid = createHeld(e, false, shareUTSAndIPC)
	for _, n := range []string{"uts", "ipc"} {
		if ns(t, pid, n) != ns(t, os.Getpid(), n) {
			t.Errorf("spec without a %s namespace: the container did not share the host's", n)
		}
	}
	e.moat("delete", id)
}

// TestSetupOomScoreAdjNegative: lowering oom_score_adj needs
// CAP_SYS_RESOURCE in the host's user namespace: root applies it; rootless
// (or a root without that capability, as in some VMs) create fails clearly
// and leaves nothing.
func TestSetupOomScoreAdjNegative(t *testing.T) {
	e := newEnv(t)
	mut := func(s *specsSpec) { s.Process.OOMScoreAdj = ptr(-500) }
	if !rootless && hasCap(unix.CAP_SYS_RESOURCE) {
		if got := strings.TrimSpace(e.runProbe([]string{"oomscore"}, mut)); got != "-500" {
			t.Errorf("oom_score_adj %q, want -500", got)
		}
		return
	}
	b := e.newBundle([]string{"oomscore"}, mut)
	id := e.id()
	failsOneLine(e, "set oom_score_adj: write /proc/self/oom_score_adj: permission denied", "create", "--bundle", b.dir, id)
	assertNothingLeft(e, id)
}

// hasCap reports whether the test process has capability c in its
// effective set.
func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}
