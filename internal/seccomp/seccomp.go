// Package seccomp compiles OCI seccomp profiles (runtime-spec LinuxSeccomp) to classic BPF in
// pure Go, with libseccomp/runc semantics, and installs them. No cgo, no libseccomp.
//
// Program layout (see compile.go):
//
//	A = seccomp_data.arch
//	one JEQ per audit arch of the filter → that arch's block; other arches → KILL_PROCESS
//	arch block: A = nr; (AUDIT_ARCH_X86_64: nr ≥ __X32_SYSCALL_BIT → x32 block or KILL_PROCESS)
//	  binary search over the syscall numbers that have rules → the syscall's rules
//	  rules: most restrictive action first; each rule ANDs its argument comparisons
//	  no rule matched → default action; number above this package's table → ENOSYS (unless
//	  the default action is ALLOW or LOG, as runc), so that libc falls back from newer syscalls
//
// Semantics worth knowing:
//   - Arguments are compared unsigned, as 64-bit values (high half, then low half) on 64-bit
//     ABIs; on 32-bit ABIs (x86, x32, arm) only the low 32 bits exist and values are truncated
//     to 32 bits, as libseccomp does.
//   - When several rules of a syscall match, the most restrictive action wins (the kernel's
//     order); among equally restrictive ones, the first in the profile. Rules whose action is
//     the default action are dropped.
//   - x86 socketcall(2) and ipc(2) are not demultiplexed: rules on "socket" apply to the direct
//     syscall only; "socketcall" is a syscall name of its own.
//   - Syscall tables are generated from golang.org/x/sys/unix (go generate); the x32 table is
//     derived from the x86_64 one and the kernel's syscall_64.tbl (see gen/main.go).
package seccomp

import (
	"runtime"
	"slices"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Filter is a compiled profile, ready to Install.
type Filter struct {
	Program []unix.SockFilter // what Install loads
	// Flags are the SECCOMP_FILTER_FLAG_* bits from the profile's flags, as passed to seccomp(2)
	// (TSYNC dropped; WAIT_KILLABLE_RECV kept only with Notify; NEW_LISTENER added by Install).
	Flags  uint
	Notify bool // profile uses SCMP_ACT_NOTIFY: Install returns a listener fd
	// Architectures lists the SCMP_ARCH_* ABIs the program accepts, the native one first.
	Architectures []string
	// Skipped lists the syscall names that an architecture's table does not know; their rules
	// do not apply on that architecture (worth a debug log line).
	Skipped []SkippedSyscall
	// actions are the distinct SECCOMP_RET_* actions the program can return.
	actions []uint32
}

// SkippedSyscall is a profile syscall name unknown on one architecture.
type SkippedSyscall struct {
	Arch string // SCMP_ARCH_*
	Name string
}

// Compile validates p and compiles it for the architectures it lists plus the native one.
func Compile(p *specs.LinuxSeccomp) (*Filter, error) {
	return compile(p, runtime.GOARCH)
}

// compile is Compile for a process whose native architecture is goarch.
func compile(p *specs.LinuxSeccomp, goarch string) (*Filter, error) {
	prof, err := parseProfile(p, goarch)
	if err != nil {
		return nil, err
	}
	c := newCompiler(prof)
	prog, err := c.program()
	if err != nil {
		return nil, err
	}
	f := &Filter{
		Program: prog,
		Flags:   prof.flags,
		Notify:  prof.notify,
		Skipped: c.skipped,
		actions: c.actions(),
	}
	for _, a := range prof.arches {
		f.Architectures = append(f.Architectures, a.name)
	}
	sort.SliceStable(f.Skipped, func(i, j int) bool {
		return slices.Index(f.Architectures, f.Skipped[i].Arch) < slices.Index(f.Architectures, f.Skipped[j].Arch)
	})
	return f, nil
}
