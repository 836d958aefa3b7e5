package gofer

import (
	"slices"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// goferSyscalls is the gofer's seccomp allowlist: what the Go runtime and the
// FUSE file server call once the gofer is confined, and nothing that could
// reach beyond its jail (no mount, pivot_root, setns, unshare, ptrace,
// open_by_handle_at, bpf, keyctl, execve, socket or connect). Checked by
// running the gofer under the e2e suite with the filter in log mode; an
// unlisted call kills the gofer (tested).
var goferSyscalls = slices.Concat(seccomp.GoRuntime, []string{
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
})
