package seccomp

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Pieces of the allowlists of moat's confined Go helpers (the gofer, `moat
// net`): the calls the Go runtime makes, and the rules that allow clone,
// tgkill, prlimit64, fcntl and ioctl only in the forms the runtime uses.

// GoRuntime are the calls a Go program makes whatever it does, besides
// those the rules below allow in part (clone: ThreadsOnly; tgkill,
// prlimit64: OwnProcessOnly; fcntl: NoSignalOwner). restart_syscall
// resumes a sleep or futex wait a signal interrupted.
var GoRuntime = []string{
	"read", "write", "close", "mmap", "munmap", "mprotect", "madvise", "brk",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
	"exit", "exit_group", "futex", "getpid", "gettid",
	"sched_yield", "sched_getaffinity", "nanosleep", "clock_gettime", "clock_nanosleep",
	"gettimeofday", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd2", "pipe2", "getrandom", "restart_syscall", "uname",
	"getuid", "getgid", "geteuid", "getegid", "membarrier", "rseq", "set_robust_list",
}

// ThreadsOnly allows clone(2) without namespace flags: the threads and
// processes of a confined helper (the gofer, `moat net`), never a new user
// or network namespace, which would give a compromised helper capabilities
// over a namespace of its own (rtnetlink, privileged socket options).
func ThreadsOnly() specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: nsFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}}}
}

// OwnProcessOnly allows tgkill(2) and prlimit64(2) on the calling process
// (pid, as getpid(2) returns it) only: what the Go runtime does. A helper
// running as uid 0 needs no capability to signal, or change the limits
// of, any other process of uid 0 it can name, so a compromised gofer or
// net process could otherwise kill or starve the host's root processes.
func OwnProcessOnly(pid int) []specs.LinuxSyscall {
	is := func(v uint64) []specs.LinuxSeccompArg {
		return []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: specs.OpEqualTo}}
	}
	return []specs.LinuxSyscall{
		{Names: []string{"tgkill"}, Action: specs.ActAllow, Args: is(uint64(pid))},
		{Names: []string{"prlimit64"}, Action: specs.ActAllow, Args: is(0)},
		{Names: []string{"prlimit64"}, Action: specs.ActAllow, Args: is(uint64(pid))},
	}
}

// fioSetOwn and siocSPgrp are the ioctls that set a descriptor's owner
// (asm-generic and x86; x/sys/unix has no names for them).
const (
	fioSetOwn = 0x8901
	siocSPgrp = 0x8902
)

// NoSignalOwner allows fcntl(2), and with ioctls true ioctl(2), but not
// the commands that name a process to signal on I/O (F_SETOWN,
// F_SETOWN_EX, F_SETSIG; FIOSETOWN, SIOCSPGRP): the kernel lets an owner of
// euid 0 signal any process that way, with any signal, capabilities or
// not. What the Go runtime and moat's helpers use (flags, descriptor
// flags, locks, FUSE and file ioctls) stays allowed.
func NoSignalOwner(ioctls bool) []specs.LinuxSyscall {
	not := func(vs ...uint64) []specs.LinuxSeccompArg {
		var out []specs.LinuxSeccompArg
		for _, v := range vs {
			out = append(out, specs.LinuxSeccompArg{Index: 1, Value: v, Op: specs.OpNotEqual})
		}
		return out
	}
	out := []specs.LinuxSyscall{{Names: []string{"fcntl"}, Action: specs.ActAllow,
		Args: not(unix.F_SETOWN, unix.F_SETOWN_EX, unix.F_SETSIG)}}
	if ioctls {
		out = append(out, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: not(fioSetOwn, siocSPgrp)})
	}
	return out
}
