package netproc

import (
	"slices"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// netSyscalls is the net process's seccomp allowlist besides socket(2) and
// the calls allowed in part (allowlist): the Go runtime's, and what the
// netstack on the TAP and the host sockets of NAT, DNS and forwards call
// once the process is confined, and nothing that reaches beyond it (no
// open, mount, setns, unshare, ptrace, execve, bpf, keyctl). Collected by
// running the network e2e tests with the filter in log and trap modes; an
// unlisted call kills the process (TestConfine), and boot reports the death
// while the container runs on (e2e TestNetProcKilled).
var netSyscalls = slices.Concat(seccomp.GoRuntime, []string{
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
})
