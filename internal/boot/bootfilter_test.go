//go:build amd64 || arm64

package boot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{"bootfilter": bootFilterChild})
	os.Exit(m.Run())
}

// deniedCalls are each of bootDenied with arguments that would be harmless
// without the filter (bad flags, bad descriptors, NULL: the kernel refuses
// them before acting), so that the only EPERM is the filter's.
var deniedCalls = map[string][6]uintptr{
	"init_module":       {0, 0, 0},
	"finit_module":      {^uintptr(0), 0, 0},
	"delete_module":     {0, 0},
	"kexec_load":        {0, 0, 0, 0xdead0000},
	"kexec_file_load":   {^uintptr(0), ^uintptr(0), 0, 0, 0xdead0000},
	"bpf":               {^uintptr(0), 0, 0},
	"perf_event_open":   {0, 0, ^uintptr(0), ^uintptr(0), 0},
	"userfaultfd":       {0xdead},
	"keyctl":            {^uintptr(0)},
	"add_key":           {0, 0, 0, 0, 0},
	"request_key":       {0, 0, 0, 0},
	"io_uring_setup":    {0, 0},
	"io_uring_enter":    {^uintptr(0), 0, 0, 0, 0, 0},
	"io_uring_register": {^uintptr(0), 0, 0, 0},
	"ptrace":            {unix.PTRACE_PEEKDATA, ^uintptr(0), 0, 0},
	"process_vm_readv":  {0, 0, 0, 0, 0, 0xdead},
	"process_vm_writev": {0, 0, 0, 0, 0, 0xdead},
}

var sysNumbers = map[string]uintptr{
	"init_module": unix.SYS_INIT_MODULE, "finit_module": unix.SYS_FINIT_MODULE,
	"delete_module": unix.SYS_DELETE_MODULE, "kexec_load": unix.SYS_KEXEC_LOAD,
	"kexec_file_load": unix.SYS_KEXEC_FILE_LOAD, "bpf": unix.SYS_BPF,
	"perf_event_open": unix.SYS_PERF_EVENT_OPEN, "userfaultfd": unix.SYS_USERFAULTFD,
	"keyctl": unix.SYS_KEYCTL, "add_key": unix.SYS_ADD_KEY, "request_key": unix.SYS_REQUEST_KEY,
	"io_uring_setup": unix.SYS_IO_URING_SETUP, "io_uring_enter": unix.SYS_IO_URING_ENTER,
	"io_uring_register": unix.SYS_IO_URING_REGISTER, "ptrace": unix.SYS_PTRACE,
	"process_vm_readv": unix.SYS_PROCESS_VM_READV, "process_vm_writev": unix.SYS_PROCESS_VM_WRITEV,
}

// bootFilterChild installs boot's filter on every thread, then reports each
// denied call that did not fail with EPERM and each allowed one that failed.
func bootFilterChild(string) int {
	var bad []string
	report := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if os.Geteuid() != 0 {
		// Without CAP_SYS_ADMIN seccomp needs no_new_privs.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			report("no_new_privs: %v", err)
		}
	}
	if err := installBootFilter(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for name, args := range deniedCalls {
		_, _, errno := unix.Syscall6(sysNumbers[name], args[0], args[1], args[2], args[3], args[4], args[5])
		if errno != unix.EPERM {
			report("%s: errno %v, want EPERM (boot's filter)", name, errno)
		}
	}
	// What boot does keeps working: its own pid, /proc, sockets, a child
	// (the Go runtime's threads too: the filter is on all of them).
	if unix.Getpid() != os.Getpid() {
		report("getpid")
	}
	if data, err := os.ReadFile("/proc/self/status"); err != nil {
		report("read /proc/self/status: %v", err)
	} else if !strings.Contains(string(data), "Seccomp:\t2") {
		report("not filtered after install:\n%s", data)
	}
	if fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
		report("socketpair: %v", err)
	} else {
		unix.Close(fds[0])
		unix.Close(fds[1])
	}
	var info unix.Sysinfo_t
	if _, _, errno := unix.Syscall(unix.SYS_SYSINFO, uintptr(unsafe.Pointer(&info)), 0, 0); errno != 0 {
		report("sysinfo: %v", errno)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "/bin/sh", "-c", "grep ^Seccomp: /proc/self/status").CombinedOutput(); err != nil {
		report("fork and exec a child: %v", err)
	} else if !strings.Contains(string(out), "2") {
		report("a child of the filtered process is unfiltered: %s", out)
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, strings.Join(bad, "\n"))
		return 1
	}
	return 0
}

// TestBootFilter: after boot's filter, each denied call fails with EPERM,
// and what boot does (files, sockets, children) still works.
func TestBootFilter(t *testing.T) {
	if len(deniedCalls) != len(bootDenied) {
		t.Fatalf("the test covers %d calls, boot denies %d", len(deniedCalls), len(bootDenied))
	}
	for _, n := range bootDenied {
		if _, ok := deniedCalls[n]; !ok {
			t.Errorf("%s is denied but not tested", n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := reexec.Command(ctx, "bootfilter", "").CombinedOutput()
	if err != nil {
		t.Fatalf("filtered child: %v\n%s", err, out)
	}
}
