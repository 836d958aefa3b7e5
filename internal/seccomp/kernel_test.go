package seccomp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// The kernel tests re-exec the test binary. The child (its role is childRole) compiles the
// profile it is given, installs it on a locked thread with no_new_privs, makes one raw syscall
// (or execs a program) and writes "ret=R errno=E notified=N" to stdout, using raw syscalls only
// once the filter is in place. The parent checks that line, or how the child died.

const childRole = "seccomp-child"

// childCase is what the parent asks the child to do.
type childCase struct {
	Profile specs.LinuxSeccomp
	// Mode: "" (one syscall), "notify" (answer the notification with NotifyVal), "exec"
	// (exec Exec), "killthread" (the syscall's thread is expected to die: report from main).
	Mode      string
	Nr        uint64
	Args      [6]uint64
	PathArg   int // 1 + index of the argument to replace with a pointer to Path; 0: none
	Path      string
	Exec      []string
	NotifyVal int64
}

func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{childRole: childMain})
	os.Exit(m.Run())
}

func childMain(spec string) int {
	var c childCase
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	f, err := Compile(&c.Profile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	debug.SetGCPercent(-1) // no stop-the-world waiting on a filtered (or killed) thread
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	go runUnderFilter(&c, f) // exits the process, unless its thread gets killed
	if c.Mode != "killthread" {
		time.Sleep(10 * time.Second)
		fmt.Println("main: no result")
		return 0
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if tid := filteredTid.Load(); tid != 0 && threadGone(tid) {
			fmt.Println("main: filtered thread gone")
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("main: filtered thread alive")
	return 0
}

// threadGone reports whether thread tid of this process has exited (a thread-group leader
// lingers as a zombie).
func threadGone(tid int32) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", tid))
	return err != nil || bytes.Contains(stat, []byte(") Z "))
}

// filteredTid is the thread that installs the filter.
var filteredTid atomic.Int32

var notifiedNr atomic.Int32

func runUnderFilter(c *childCase, f *Filter) {
	runtime.LockOSThread() // never unlocked: the filtered thread ends with this goroutine
	args := c.Args
	path := append([]byte(c.Path), 0)
	if c.PathArg > 0 {
		args[c.PathArg-1] = uint64(uintptr(unsafe.Pointer(&path[0])))
	}
	env := os.Environ()
	out := make([]byte, 0, 128)
	filteredTid.Store(int32(unix.Gettid()))
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "child: no_new_privs:", err)
		os.Exit(2)
	}
	fd, err := f.Install()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	switch c.Mode {
	case "exec":
		err := syscall.Exec(c.Exec[0], c.Exec, env)
		rawExit(fmt.Appendf(out, "exec: %v\n", err), 3)
	case "notify":
		go answerNotification(fd, c.NotifyVal)
	}
	r, _, errno := unix.Syscall6(uintptr(c.Nr), uintptr(args[0]), uintptr(args[1]),
		uintptr(args[2]), uintptr(args[3]), uintptr(args[4]), uintptr(args[5]))
	runtime.KeepAlive(path)
	out = append(out, "ret="...)
	out = strconv.AppendInt(out, int64(r), 10)
	out = append(out, " errno="...)
	out = strconv.AppendInt(out, int64(errno), 10)
	out = append(out, " notified="...)
	out = strconv.AppendInt(out, int64(notifiedNr.Load()), 10)
	rawExit(append(out, '\n'), 0)
}

// rawExit writes out to stdout and ends the process, with nothing but two syscalls.
func rawExit(out []byte, code int) {
	unix.RawSyscall(unix.SYS_WRITE, 1, uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)))
	unix.RawSyscall(unix.SYS_EXIT_GROUP, uintptr(code), 0, 0)
}

// answerNotification runs on an unfiltered thread: it answers one notification with val.
func answerNotification(fd int, val int64) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "child: notify: %s: %v\n", what, err)
		os.Exit(4)
	}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := unix.Poll(pfd, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue
		}
		if err != nil || n == 0 {
			fail("poll", fmt.Errorf("n=%d err=%v", n, err))
		}
		break
	}
	n, err := NotifReceive(fd)
	if err != nil {
		fail("receive", err)
	}
	notifiedNr.Store(n.Data.Nr)
	if !NotifIDValid(fd, n.ID) {
		fail("id valid", fmt.Errorf("id %d not valid", n.ID))
	}
	if err := NotifRespond(fd, &NotifResp{ID: n.ID, Val: val}); err != nil {
		fail("respond", err)
	}
}

// childResult is how the child ended.
type childResult struct {
	stdout, stderr string
	ws             syscall.WaitStatus
}

func requireSeccomp(t *testing.T) {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil || !bytes.Contains(status, []byte("\nSeccomp:")) {
		t.Skip("kernel without seccomp")
	}
	if NativeArch() == "" {
		t.Skip("unsupported native architecture")
	}
}

func runChild(t *testing.T, c childCase) childResult {
	t.Helper()
	requireSeccomp(t)
	spec, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := reexec.Command(ctx, childRole, string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil || cmd.ProcessState == nil {
		t.Fatalf("child did not end properly: %v; stderr:\n%s", runErr, stderr.String())
	}
	return childResult{stdout.String(), stderr.String(), cmd.ProcessState.Sys().(syscall.WaitStatus)}
}

// result parses the child's "ret=R errno=E notified=N" line.
func (r childResult) result(t *testing.T) (ret int64, errno unix.Errno, notified int32) {
	t.Helper()
	var e, n int64
	if _, err := fmt.Sscanf(r.stdout, "ret=%d errno=%d notified=%d", &ret, &e, &n); err != nil {
		t.Fatalf("child output %q (%v), stderr:\n%s", r.stdout, r.ws, r.stderr)
	}
	return ret, unix.Errno(e), int32(n)
}

// expectErrno runs c and checks the syscall failed with want (0: succeeded).
func expectErrno(t *testing.T, c childCase, want unix.Errno) int64 {
	t.Helper()
	ret, errno, _ := runChild(t, c).result(t)
	if errno != want {
		t.Errorf("errno %d (%v), want %d (%v)", errno, errno, want, want)
	}
	return ret
}

// nativeNr is the number of name on the running kernel's ABI.
func nativeNr(t *testing.T, name string) uint64 {
	t.Helper()
	return uint64(sysnr(t, NativeArch(), name))
}

// runtimeSyscalls keeps the Go runtime of a child alive under a default-deny profile.
var runtimeSyscalls = []string{
	"write", "exit", "exit_group", "futex", "rt_sigreturn", "rt_sigprocmask", "rt_sigaction",
	"sigaltstack", "tgkill", "gettid", "getpid", "nanosleep", "clock_nanosleep", "sched_yield",
	"mmap", "munmap", "madvise", "clock_gettime", "epoll_pwait", "epoll_wait", "clone", "clone3",
	"getppid",
}

func allowProfile(rules ...specs.LinuxSyscall) specs.LinuxSeccomp {
	return specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules}
}

func TestKernelErrnoAndArgs(t *testing.T) {
	if archByName(NativeArch()).bits32 {
		t.Skip("64-bit argument halves need a 64-bit ABI")
	}
	p := allowProfile(
		specs.LinuxSyscall{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(42),
			Args: []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, 0x1_00000002)}},
		specs.LinuxSyscall{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(43),
			Args: []specs.LinuxSeccompArg{arg(0, specs.OpGreaterThan, 0x2_00000000),
				{Index: 1, Op: specs.OpMaskedEqual, Value: 0xff, ValueTwo: 0x12}}},
	)
	getppid := nativeNr(t, "getppid")
	cases := []struct {
		args [6]uint64
		want unix.Errno
	}{
		{[6]uint64{0x1_00000002}, 42},
		{[6]uint64{0x2}, 0},
		{[6]uint64{0x2_00000002}, 0},
		{[6]uint64{0x3_00000000, 0x1234}, 0},
		{[6]uint64{0x3_00000000, 0x5512}, 43},
		{[6]uint64{0x2_00000000, 0x12}, 0},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%#x", tc.args[:2]), func(t *testing.T) {
			ret := expectErrno(t, childCase{Profile: p, Nr: getppid, Args: tc.args}, tc.want)
			if tc.want == 0 && ret != int64(os.Getpid()) {
				t.Errorf("getppid = %d, want %d", ret, os.Getpid())
			}
		})
	}
}

func TestKernelDefaultErrno(t *testing.T) {
	p := specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uptr(uint(unix.ENODATA)),
		Syscalls: []specs.LinuxSyscall{
			sysRule(specs.ActAllow, runtimeSyscalls...),
			sysRule(specs.ActErrno, "getpgid"),
		},
	}
	t.Run("default", func(t *testing.T) {
		expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, "uname")}, unix.ENODATA)
	})
	t.Run("rule without errnoRet", func(t *testing.T) {
		expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, "getpgid")}, unix.EPERM)
	})
	t.Run("allowed", func(t *testing.T) {
		expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, "getppid")}, 0)
	})
	t.Run("newer than the table", func(t *testing.T) {
		nr := uint64(archByName(NativeArch()).table.maxNr + 1)
		expectErrno(t, childCase{Profile: p, Nr: nr}, unix.ENOSYS)
	})
}

// TestKernelDefaultProfileRestart: under the default profile, a sleep that
// a stop signal interrupted resumes (restart_syscall) rather than failing
// with EPERM; with nothing to restart the call fails with EINTR.
func TestKernelDefaultProfileRestart(t *testing.T) {
	expectErrno(t, childCase{Profile: *Default(), Nr: nativeNr(t, "restart_syscall")}, unix.EINTR)
}

// TestKernelDefaultProfileSelect: glibc's select() on x86_64 is select(2),
// which the default profile allows (a zero timeout returns at once).
func TestKernelDefaultProfileSelect(t *testing.T) {
	if NativeArch() != "SCMP_ARCH_X86_64" {
		t.Skip("select(2) is an x86_64 call")
	}
	zeroTimeval := string(make([]byte, 16))
	expectErrno(t, childCase{Profile: *Default(), Nr: nativeNr(t, "select"), PathArg: 5, Path: zeroTimeval}, 0)
}

func TestKernelMkdiratMode(t *testing.T) {
	p := allowProfile(specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActErrno,
		ErrnoRet: uptr(uint(unix.EACCES)),
		Args:     []specs.LinuxSeccompArg{{Index: 2, Op: specs.OpMaskedEqual, Value: 0o777, ValueTwo: 0o700}}})
	dir := t.TempDir()
	cwd := int64(unix.AT_FDCWD)
	atFDCWD := uint64(cwd) // -100 as the kernel sees the register
	for _, tc := range []struct {
		mode uint64
		want unix.Errno
	}{{0o755, 0}, {0o700, unix.EACCES}, {0o1700, unix.EACCES}, {0o701, 0}} {
		t.Run(fmt.Sprintf("%o", tc.mode), func(t *testing.T) {
			path := fmt.Sprintf("%s/d%o", dir, tc.mode)
			c := childCase{Profile: p, Nr: nativeNr(t, "mkdirat"), Args: [6]uint64{atFDCWD, 0, tc.mode},
				PathArg: 2, Path: path}
			expectErrno(t, c, tc.want)
			_, err := os.Stat(path)
			if created := err == nil; created != (tc.want == 0) {
				t.Errorf("directory created = %v", created)
			}
		})
	}
}

func TestKernelKillProcess(t *testing.T) {
	r := runChild(t, childCase{Profile: allowProfile(sysRule(specs.ActKillProcess, "getppid")),
		Nr: nativeNr(t, "getppid")})
	if !r.ws.Signaled() || r.ws.Signal() != unix.SIGSYS {
		t.Errorf("child ended with %v, want death by SIGSYS; stdout %q", r.ws, r.stdout)
	}
}

func TestKernelKillThread(t *testing.T) {
	for _, act := range []specs.LinuxSeccompAction{specs.ActKill, specs.ActKillThread} {
		t.Run(string(act), func(t *testing.T) {
			r := runChild(t, childCase{Profile: allowProfile(sysRule(act, "getppid")),
				Nr: nativeNr(t, "getppid"), Mode: "killthread"})
			if r.ws.ExitStatus() != 0 || r.stdout != "main: filtered thread gone\n" {
				t.Errorf("child ended with %v, stdout %q, want the thread dead and the process alive",
					r.ws, r.stdout)
			}
		})
	}
}

func TestKernelTrap(t *testing.T) {
	r := runChild(t, childCase{Profile: allowProfile(sysRule(specs.ActTrap, "getppid")),
		Nr: nativeNr(t, "getppid")})
	// The Go runtime does not handle a seccomp SIGSYS: it reports it (sigcode 1 = SYS_SECCOMP)
	// and exits with status 2, which proves the kernel delivered the signal.
	if r.ws.ExitStatus() != 2 || !strings.Contains(r.stderr, "SIGSYS: bad system call") ||
		!strings.Contains(r.stderr, "sigcode=1") {
		t.Errorf("child ended with %v; stderr:\n%s", r.ws, r.stderr)
	}
}

func TestKernelLogAndTrace(t *testing.T) {
	p := allowProfile(sysRule(specs.ActLog, "getppid"), sysRule(specs.ActTrace, "getpgid"))
	p.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog,
		specs.LinuxSeccompFlagSpecAllow}
	if ret := expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, "getppid")}, 0); ret != int64(os.Getpid()) {
		t.Errorf("getppid under LOG = %d, want %d", ret, os.Getpid())
	}
	// SECCOMP_RET_TRACE without a tracer fails the syscall with ENOSYS
	expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, "getpgid")}, unix.ENOSYS)
}

func TestKernelNotify(t *testing.T) {
	getppid := nativeNr(t, "getppid")
	for _, flags := range [][]specs.LinuxSeccompFlag{nil, {specs.LinuxSeccompFlagWaitKillableRecv}} {
		t.Run(fmt.Sprint(flags), func(t *testing.T) {
			p := allowProfile(sysRule(specs.ActNotify, "getppid"))
			p.Flags = flags
			r := runChild(t, childCase{Profile: p, Nr: getppid, Mode: "notify", NotifyVal: 4242})
			if flags != nil && strings.Contains(r.stderr, "invalid argument") {
				t.Skipf("kernel older than 5.19: %s", r.stderr)
			}
			ret, errno, notified := r.result(t)
			if errno != 0 || ret != 4242 || uint64(notified) != getppid {
				t.Errorf("ret=%d errno=%v notified=%d, want 4242, 0, %d", ret, errno, notified, getppid)
			}
		})
	}
}

func TestKernelX32Bit(t *testing.T) {
	if NativeArch() != amd64 {
		t.Skip("x32 exists on x86_64 only")
	}
	getpid := uint64(x32Bit | unix.SYS_GETPID)
	r := runChild(t, childCase{Profile: allowProfile(), Nr: getpid})
	if !r.ws.Signaled() || r.ws.Signal() != unix.SIGSYS {
		t.Errorf("x32 syscall under an x86_64-only filter: %v, want death by SIGSYS", r.ws)
	}
	p := allowProfile()
	p.Architectures = []specs.Arch{specs.ArchX32}
	r = runChild(t, childCase{Profile: p, Nr: getpid})
	if r.ws.Signaled() {
		t.Errorf("x32 syscall with SCMP_ARCH_X32 listed: killed by %v", r.ws.Signal())
	}
}
