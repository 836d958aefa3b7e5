package gofer

import (
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/seccomp"
)

// fileServerCaps are all the gofer keeps once it serves. It acts on files
// for callers the kernel already checked (the mounts use
// default_permissions), so it needs to override permission bits and
// ownership, and to hand files to their owners:
//
//	CAP_CHOWN        create files owned by the caller, chown
//	CAP_DAC_OVERRIDE read, write and search regardless of mode bits
//	CAP_FOWNER       chmod, utimes, xattrs on files it does not own
//	CAP_FSETID       keep the setgid group of new files in setgid dirs
//
// Not kept: CAP_DAC_READ_SEARCH (it allows open_by_handle_at, the classic
// container escape), CAP_MKNOD (no device nodes through the gofer),
// CAP_SYS_ADMIN except for FUSE passthrough as real root, which needs it in
// the initial user namespace for each backing file.
var fileServerCaps = []uintptr{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID}

// readOnlyServerCaps are all a server of read-only trees keeps (the shared
// gofer, a container's gofer whose trees are all read-only): reading and searching whatever the kernel let the caller reach.
// It creates, chowns, chmods and sets nothing.
var readOnlyServerCaps = []uintptr{unix.CAP_DAC_OVERRIDE}

// confine drops every thread of the gofer to the capabilities keep
// (bounding, effective, permitted, inheritable; ambient cleared), sets
// no_new_privs, raises RLIMIT_NOFILE, clears the umask and installs the
// seccomp allowlist on all threads.
//
// Why not a re-exec, as gVisor's gofer does: capabilities and no_new_privs
// belong to threads, and a Go program has many. AllThreadsSyscall applies
// each change to every thread at once, and threads created later copy a
// changed one, so the result is the re-exec's (tested: every thread's
// /proc status is checked) without a second Go start-up on the path to a
// created container. It needs a moat built without cgo, as moat is.
// Precondition: the gofer is pivoted into its jail.
func confine(keep []uintptr, extra ...string) error {
	if err := setRlimitNofile(); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	unix.Umask(0)
	if err := procutil.DropCaps(keep); err != nil {
		return err
	}
	if err := procutil.AllThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	f, err := seccomp.Compile(allowlist(extra...))
	if err != nil {
		return fmt.Errorf("gofer seccomp filter: %w", err)
	}
	if err := f.InstallAllThreads(); err != nil {
		return fmt.Errorf("gofer seccomp filter: %w", err)
	}
	return nil
}

// setRlimitNofile lets the server hold one descriptor per live node.
func setRlimitNofile() error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur = rl.Max
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
}

// allowlist is every syscall the gofer makes once confined (the Go runtime
// and the file server; clone only for threads, tgkill and prlimit64 only on
// itself, fcntl and ioctl never naming a process to signal); anything else
// kills it. Precondition: called by the gofer.
func allowlist(extra ...string) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActKillProcess,
		Syscalls: append([]specs.LinuxSyscall{
			{Names: append(append([]string{}, goferSyscalls...), extra...), Action: specs.ActAllow},
			seccomp.ThreadsOnly(),
		}, append(seccomp.OwnProcessOnly(os.Getpid()), seccomp.NoSignalOwner(true)...)...),
	}
}
