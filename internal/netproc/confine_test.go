package netproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/testutil/reach"
)

// The confinement is tested in a child of the test binary, in a mount
// namespace of its own (as boot spawns `moat net`): it confines itself,
// makes the calls the network makes, then one it must not make.
const envChild = "MOAT_NETPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child confines itself, checks the allowed socket kinds, prints "ok" and
// then tries what mode names (which must kill it).
func child(mode string) int {
	ppid := os.Getppid() // getppid is not on the list
	if err := confine(); errors.Is(err, procutil.ErrCgoBuild) {
		fmt.Println("cgo")
		return 0
	} else if err != nil {
		fmt.Println("confine:", err)
		return 2
	}
	for _, s := range [][3]int{
		{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC, 0},
		{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0},
		{unix.AF_INET, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP}, // may be refused by ping_group_range, not by seccomp
		{unix.AF_INET6, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0},
		{unix.AF_INET6, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, 0},
		{unix.AF_INET, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, unix.IPPROTO_TCP},
		{unix.AF_INET6, unix.SOCK_DGRAM | unix.SOCK_CLOEXEC, unix.IPPROTO_UDP},
		{unix.AF_NETLINK, unix.SOCK_RAW | unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE},
	} {
		fd, err := unix.Socket(s[0], s[1], s[2])
		if err != nil && !(s[2] == unix.IPPROTO_ICMP && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM))) {
			fmt.Printf("socket%v: %v\n", s, err)
			return 3
		}
		unix.Close(fd)
	}
	// The runtime's restarted sleeps (a signal during nanosleep or a timed
	// futex) come back as restart_syscall, which with nothing to restart
	// fails with EINTR; uname is the kernel-version probe of os and net.
	if _, _, errno := unix.Syscall(unix.SYS_RESTART_SYSCALL, 0, 0, 0); errno != unix.EINTR {
		fmt.Println("restart_syscall:", errno)
		return 3
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		fmt.Println("uname:", err)
		return 3
	}
	if _, err := os.Stat("/proc/self"); err == nil {
		fmt.Println("/proc is reachable")
		return 4
	}
	fmt.Println("ok")
	switch mode {
	case "unix":
		unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	case "packet":
		unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	case "raw":
		unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	case "sctp":
		unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_SCTP)
	case "udplite":
		unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE)
	case "icmpv6":
		unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM, unix.IPPROTO_ICMPV6)
	case "netlink-audit":
		unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	case "open":
		unix.Open("/", unix.O_RDONLY, 0)
	case "mount":
		unix.Mount("none", "/", "tmpfs", 0, "")
	case "execve":
		unix.Exec("/bin/sh", []string{"sh"}, nil)
	default:
		if _, err := reach.Try(mode, ppid); err != nil {
			return 5
		}
	}
	return 0
}

func runChild(t *testing.T, mode string) (string, syscall.WaitStatus) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = []string{envChild + "=" + mode}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Skipf("cannot start a child in a mount namespace of its own: %v", err)
	}
	return out.String(), cmd.ProcessState.Sys().(syscall.WaitStatus)
}

func TestConfine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a mount namespace of its own to empty)")
	}
	out, ws := runChild(t, "none")
	if out == "cgo\n" {
		t.Skip("a cgo build cannot confine every thread (CGO_ENABLED=0)")
	}
	if out != "ok\n" || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("confined child: %q, %v", out, ws)
	}
	if out, ws := runChild(t, reach.Allowed); out != "ok\n" || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("confined child, fcntl(F_GETFL): %q, %v", out, ws)
	}
	for _, mode := range append([]string{"unix", "packet", "raw", "sctp", "udplite", "icmpv6", "netlink-audit", "open", "mount", "execve"}, reach.Escapes...) {
		out, ws := runChild(t, mode)
		if out != "ok\n" || !ws.Signaled() || ws.Signal() != unix.SIGSYS {
			t.Errorf("%s: want a seccomp kill after ok, got %q, %v", mode, out, ws)
		}
	}
}
