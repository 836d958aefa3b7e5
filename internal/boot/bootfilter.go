package boot

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// bootDenied are the system calls a supervisor never makes (issue 17):
// kernel modules, kexec, eBPF, perf events, userfaultfd, the keyrings,
// io_uring (a second way to make most calls, unseen by filters), and
// ptrace with its relatives process_vm_readv/writev. Boot reads other
// processes' /proc files (ps, namespaces), which is a ptrace access check,
// never the ptrace(2) call.
var bootDenied = []string{
	"init_module", "finit_module", "delete_module",
	"kexec_load", "kexec_file_load",
	"bpf", "perf_event_open", "userfaultfd",
	"keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"ptrace", "process_vm_readv", "process_vm_writev",
}

// bootFilterProfile allows everything else. A denied call fails with EPERM
// rather than killing boot: boot is the container's supervisor (init dies
// with it), so a library that one day probes one of these calls would
// otherwise take every container down, while EPERM closes the same door to
// an attacker. Foreign architectures (int 0x80) kill, as in every compiled
// profile.
func bootFilterProfile() *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: bootDenied, Action: specs.ActErrno, ErrnoRet: &eperm}},
	}
}

// installBootFilter filters every thread of boot (TSYNC); threads created
// later inherit it.
// Precondition: the spawner runs (every later child is forked there), and
// boot holds CAP_SYS_ADMIN in its user namespace (no_new_privs is not set:
// it would reach nothing boot starts, but is not needed either).
func installBootFilter() error {
	f, err := seccomp.Compile(bootFilterProfile())
	if err != nil {
		return fmt.Errorf("compile boot's seccomp filter: %w", err)
	}
	if err := f.InstallAllThreads(); err != nil {
		return fmt.Errorf("boot's seccomp filter: %w", err)
	}
	return nil
}
