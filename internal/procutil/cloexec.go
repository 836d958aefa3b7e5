package procutil

import "golang.org/x/sys/unix"

// CloseOnExecFrom marks every descriptor from first up close-on-exec, so
// that a child gets only what it is handed explicitly (exec.Cmd's
// ExtraFiles are duplicated without the flag).
func CloseOnExecFrom(first int) error {
	if err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11: mark each possible descriptor.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	limit := int(min(rl.Cur, 1<<20))
	for fd := first; fd < limit; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
			return err
		}
	}
	return nil
}
