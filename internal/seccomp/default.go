package seccomp

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// moat's default seccomp profile (`moat do`, and containers without one
// under --seccomp-default): deny by default (EPERM), and allow what shells,
// compilers, interpreters, git and package managers use. Not allowed, among the rest: new namespaces (clone and unshare with
// namespace flags, setns: no nested user namespace), io_uring, bpf,
// userfaultfd, perf_event_open, the key ring (keyctl, add_key,
// request_key), module and kexec calls, ptrace and process_vm_*, mount
// and the new mount API, System V IPC, AIO, and the terminal
// ioctls that inject input or reach the console (TIOCSTI, TIOCLINUX).

// allowed are the calls allowed whatever their arguments. The older forms
// of allowed calls are here too (select, getdents, epoll_create, utimes,
// ...): glibc and older static binaries still make them on x86_64.
var allowed = []string{
	// files
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
	"open", "openat", "openat2", "close", "close_range", "lseek", "dup", "dup2", "dup3", "fcntl",
	"flock", "fsync", "fdatasync", "sync", "ftruncate", "truncate", "fallocate",
	"fadvise64", "sendfile", "copy_file_range", "splice",
	"stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
	"readlink", "readlinkat", "getdents64", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2",
	"link", "linkat", "unlink", "unlinkat", "symlink", "symlinkat", "chdir", "fchdir", "getcwd", "mknod",
	"mknodat", "umask", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
	"utimensat",
	"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "setxattr", "lsetxattr",
	"fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
	"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"getdents", "creat", "utime", "utimes", "futimesat", "readahead", "sync_file_range", "syncfs",
	"tee", "vmsplice",
	// memory
	"brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "membarrier", "memfd_create",
	"mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall",
	// processes
	"execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tkill", "tgkill", "getpid",
	"getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "vfork", "fork",
	"set_tid_address", "set_robust_list", "rseq", "prctl", "arch_prctl", "prlimit64",
	"getrlimit", "setrlimit", "getrusage", "times", "sched_yield", "sched_getaffinity", "sched_setaffinity",
	"sched_getparam", "sched_getscheduler", "sched_get_priority_min", "sched_get_priority_max", "getcpu",
	"ioprio_get", "ioprio_set",
	"getpriority", "setpriority", "capget", "capset", "pidfd_open", "pidfd_send_signal", "seccomp", "uname",
	"sysinfo", "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	// credentials (the capabilities decide)
	"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid", "setgid",
	"setreuid", "setregid", "setresuid", "setresgid", "setgroups",
	// signals
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
	"sigaltstack", "pause", "alarm", "signalfd", "signalfd4", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
	// a sleep or wait interrupted by a stop signal and continued resumes through it
	"restart_syscall",
	// time
	"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "getitimer",
	"setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_delete",
	"timerfd_create", "timerfd_settime", "timerfd_gettime",
	// waiting
	"futex", "futex_waitv", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
	"eventfd", "eventfd2", "poll", "ppoll", "select", "pselect6", "pipe", "pipe2",
	// sockets
	"socket", "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname", "getpeername",
	"sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown", "setsockopt", "getsockopt",
	"getrandom",
}

// nsFlags are the clone and unshare flags that make namespaces.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

// Default is `moat do`'s profile, and with --seccomp-default that of a
// container whose spec has none.
func Default() *specs.LinuxSeccomp {
	noNS := []specs.LinuxSeccompArg{{Index: 0, Value: nsFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}}
	enosys, eacces := uint(unix.ENOSYS), uint(unix.EACCES)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
		Syscalls: []specs.LinuxSyscall{
			{Names: allowed, Action: specs.ActAllow},
			// threads and processes, not namespaces
			{Names: []string{"clone", "unshare"}, Action: specs.ActAllow, Args: noNS},
			// clone3 passes its flags in memory, out of the filter's
			// sight: ENOSYS makes libc fall back to clone.
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
			// personality: only querying and the usual execution domains
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 8, Op: specs.OpEqualTo}}},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			// every ioctl but the ones that type into the terminal or
			// reach the console, compared on the low 32 bits the kernel
			// reads (EACCES: a rule with the default's EPERM would be the
			// default itself)
			{Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 0xffffffff, ValueTwo: unix.TIOCSTI, Op: specs.OpMaskedEqual}}},
			{Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: &eacces, Args: []specs.LinuxSeccompArg{
				{Index: 1, Value: 0xffffffff, ValueTwo: unix.TIOCLINUX, Op: specs.OpMaskedEqual}}},
			{Names: []string{"ioctl"}, Action: specs.ActAllow},
		},
	}
}
