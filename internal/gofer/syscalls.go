package gofer

// goferSyscalls is the gofer's seccomp allowlist: what the Go runtime and the
// FUSE file server call once the gofer is confined, and nothing that could
// reach beyond its jail (no mount, pivot_root, setns, unshare, ptrace,
// open_by_handle_at, bpf, keyctl, execve, socket or connect). Checked by
// running the gofer under the e2e suite with the filter in log mode; an
// unlisted call kills the gofer (tested).
var goferSyscalls = []string{
	// Go runtime
	"read", "write", "close", "mmap", "munmap", "mprotect", "madvise", "brk",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", // clone: seccomp.ThreadsOnly
	"exit", "exit_group", "futex", "getpid", "gettid", // tgkill, prlimit64: seccomp.OwnProcessOnly
	"sched_yield", "sched_getaffinity", "nanosleep", "clock_gettime", "clock_nanosleep",
	"gettimeofday", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd2", "pipe2", "getrandom", // fcntl, ioctl: seccomp.NoSignalOwner "restart_syscall", "uname",
	"getuid", "getgid", "geteuid", "getegid", "membarrier", "rseq", "set_robust_list",
	// receiving the FUSE descriptors
	"recvmsg",
	// the file server
	"openat", "openat2", "fstat", "newfstatat", "statx", "lseek", "pread64", "pwrite64",
	"readv", "writev", "preadv", "pwritev", "preadv2", "pwritev2", "getdents64", "readlinkat",
	"mkdirat", "mknodat", "symlinkat", "linkat", "unlinkat", "renameat2", "renameat",
	"fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "utimensat", "ftruncate",
	"fallocate", "fsync", "fdatasync", "fstatfs", "copy_file_range", "splice", "tee",
	"fgetxattr", "fsetxattr", "flistxattr", "fremovexattr",
	"getxattrat", "setxattrat", "listxattrat", "removexattrat",
	"poll", "ppoll", "flock", "dup", "dup3", "umask", "getcwd", "sync_file_range",
}
