package procutil

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// sigchld is the SIGCHLD view of a 64-bit Linux siginfo_t (what waitid
// fills): unix.Siginfo keeps these fields in its padding.
type sigchld struct {
	Signo, Errno, Code int32
	_                  int32
	Pid                int32
	UID                uint32
	Status             int32
}

// si_code values of SIGCHLD (include/uapi/asm-generic/siginfo.h).
const (
	cldExited = 1
	cldKilled = 2
	cldDumped = 3
)

// siginfoCode turns what waitid reports into the code a shell would show:
// the exit status, or 128+signal.
func siginfoCode(info *unix.Siginfo) int {
	c := (*sigchld)(unsafe.Pointer(info))
	switch c.Code {
	case cldExited:
		return int(c.Status)
	case cldKilled, cldDumped:
		return 128 + int(c.Status)
	}
	return 255
}

// WaitExitedNoReap blocks until the process behind pidfd has exited and
// returns its exit code, leaving it a zombie: whoever reaps it next (a
// subreaper such as containerd's shim or conmon, once the caller exits)
// still gets its real status.
// Precondition: pidfd refers to a child of the caller.
func WaitExitedNoReap(pidfd int) (int, error) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 255, err
		}
		return siginfoCode(&info), nil
	}
}

// Reap collects the exited child behind pidfd, if it is (still, or by now)
// a child of the caller, and returns its exit code; ok is false when there
// was nothing to collect.
func Reap(pidfd int) (code int, ok bool) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || (*sigchld)(unsafe.Pointer(&info)).Pid == 0 {
			return 0, false
		}
		return siginfoCode(&info), true
	}
}
