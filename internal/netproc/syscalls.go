package netproc

// netSyscalls is the net process's seccomp allowlist besides socket(2)
// (allowlist): what the Go runtime, the netstack on the TAP and the host
// sockets of NAT, DNS and forwards call once the process is confined, and
// nothing that reaches beyond it (no open, mount, setns, unshare, ptrace,
// execve, bpf, keyctl). Collected by running the network e2e tests with the
// filter in log and trap modes; an unlisted call kills the process
// (TestConfine), and boot reports the death while the container runs on
// (e2e TestNetProcKilled).
var netSyscalls = []string{
	// Go runtime
	"read", "write", "close", "mmap", "munmap", "mprotect", "madvise", "brk",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", // clone: seccomp.ThreadsOnly
	"exit", "exit_group", "futex", "getpid", "gettid", // tgkill, prlimit64: seccomp.OwnProcessOnly
	"sched_yield", "sched_getaffinity", "nanosleep", "clock_gettime", "clock_nanosleep",
	"gettimeofday", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd2", "pipe2", "getrandom", "restart_syscall", "uname", // fcntl: seccomp.NoSignalOwner
	"getuid", "getgid", "geteuid", "getegid", "membarrier", "rseq", "set_robust_list",
	// the runtime re-reads its cgroup's CPU limit (GOMAXPROCS) from a file it opened at start
	"pread64",
	// the TAP (gVisor fdbased: readv, writev, ppoll to block)
	"readv", "writev", "ppoll", "poll",
	// host sockets (socket(2) itself: allowlist)
	"connect", "bind", "listen", "accept4", "getsockname", "getpeername",
	"setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
	"sendmmsg", "recvmmsg", "shutdown", "dup", "dup3",
	// os.NewFile and net.FileListener on received descriptors
	"fstat", "newfstatat",
}
