// Package reach makes, in the test child of a confined helper (the gofer,
// `moat net`), the calls by which a compromised helper would reach beyond
// itself: another process of the same uid, or a namespace of its own. Under
// the helper's seccomp filter each must kill the caller (SIGSYS).
package reach

import "golang.org/x/sys/unix"

// Escapes are the modes Try knows that must be refused.
var Escapes = []string{"tgkill-other", "prlimit-other", "fcntl-setown", "fcntl-setsig", "clone-newuser"}

// Allowed is the mode Try knows that must work (the Go runtime's own use).
const Allowed = "fcntl-getfl"

// Try makes the call mode names, aimed at process other (of the same uid:
// as uid 0 no capability is needed to reach it) or at fd 0. It reports
// whether it knows mode, and the call's error for Allowed.
func Try(mode string, other int) (bool, error) {
	switch mode {
	case "tgkill-other":
		// Signal 0: the permission check alone.
		unix.Tgkill(other, other, 0)
	case "prlimit-other":
		var old unix.Rlimit
		unix.Prlimit(other, unix.RLIMIT_NOFILE, nil, &old)
	case "fcntl-setown":
		// An owner of euid 0 may signal any process on I/O.
		unix.FcntlInt(0, unix.F_SETOWN, other)
	case "fcntl-setsig":
		unix.FcntlInt(0, unix.F_SETSIG, int(unix.SIGKILL))
	case "ioctl-fiosetown":
		unix.IoctlSetPointerInt(0, 0x8901, other) // FIOSETOWN
	case "clone-newuser":
		// A user (and network) namespace of its own would give it every
		// capability there.
		unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|unix.CLONE_NEWNET|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	case Allowed:
		_, err := unix.FcntlInt(0, unix.F_GETFL, 0)
		return true, err
	default:
		return false, nil
	}
	return true, nil
}
