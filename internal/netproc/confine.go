package netproc

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/seccomp"
	"github.com/moat-sandbox/moat/internal/spec"
)

// maxFiles is the net process's RLIMIT_NOFILE: a host socket per proxied
// TCP connection (network bounds them at 4096), per UDP flow (512 NAT, 512
// per UDP forward), per DNS query in flight, and the forwards' listeners.
const maxFiles = 8192

// confine pivots the process into an empty read-only root, bounds its
// descriptors, drops every capability from every thread, sets no_new_privs
// and installs the seccomp allowlist.
// Precondition: a mount namespace of its own (boot spawns it with
// CLONE_NEWNS) and the capabilities to mount in it. The descriptors open
// are stdio (/dev/null, the log), the log, the sync socket, and the Go
// runtime's read-only handle on its cgroup's cpu.max: none is a directory
// that could lead back out of the empty root.
func confine() error {
	if err := emptyRoot(); err != nil {
		return err
	}
	if err := boundFiles(); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	if err := procutil.DropCaps(nil); err != nil {
		return err
	}
	if err := procutil.SetNoNewPrivs(); err != nil {
		return err
	}
	f, err := seccomp.Compile(allowlist())
	if err != nil {
		return fmt.Errorf("net seccomp filter: %w", err)
	}
	if err := f.InstallAllThreads(); err != nil {
		return fmt.Errorf("net seccomp filter: %w", err)
	}
	return nil
}

// emptyRoot makes the root a tiny empty tmpfs: no host path, /proc or /dev
// is reachable afterwards. The tmpfs covers a directory of /proc, in this
// mount namespace only (a mount over "/" itself is not seen by lookups that
// start from "/").
func emptyRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("isolate mounts: %w", err)
	}
	dir := spec.CoverDir("/")
	if err := unix.Mount("moat-net", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0500,size=4k"); err != nil {
		return fmt.Errorf("empty root: %w", err)
	}
	return procutil.PivotInto(dir)
}

// boundFiles sets RLIMIT_NOFILE to maxFiles (or the hard limit, if lower).
func boundFiles() error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur, rl.Max = min(rl.Max, maxFiles), min(rl.Max, maxFiles)
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
}

// allowlist is every syscall the net process makes once confined; anything
// else kills it. socket(2) is allowed for TCP and UDP over IPv4 and IPv6
// (NAT, DNS upstreams, ICMP echo sockets are IPv4 datagram sockets) and for
// NETLINK_ROUTE (the per-flow host-address check): no unix, packet or raw
// IP sockets.
func allowlist() *specs.LinuxSeccomp {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActKillProcess,
		Syscalls:      []specs.LinuxSyscall{{Names: netSyscalls, Action: specs.ActAllow}},
	}
	sock := func(family, typ uint64, proto ...uint64) specs.LinuxSyscall {
		args := []specs.LinuxSeccompArg{
			{Index: 0, Value: family, Op: specs.OpEqualTo},
			{Index: 1, Value: sockTypeMask, ValueTwo: typ, Op: specs.OpMaskedEqual},
		}
		for _, p := range proto {
			args = append(args, specs.LinuxSeccompArg{Index: 2, Value: p, Op: specs.OpEqualTo})
		}
		return specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow, Args: args}
	}
	for _, fam := range []uint64{unix.AF_INET, unix.AF_INET6} {
		p.Syscalls = append(p.Syscalls, sock(fam, unix.SOCK_STREAM), sock(fam, unix.SOCK_DGRAM))
	}
	p.Syscalls = append(p.Syscalls, sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE))
	return p
}

// sockTypeMask selects the socket type in socket(2)'s second argument (the
// rest are SOCK_NONBLOCK and SOCK_CLOEXEC).
const sockTypeMask = 0xf
