package procutil

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CloseOnExecFrom marks every descriptor from first up close-on-exec, so
// that a child gets only what it is handed explicitly (exec.Cmd's
// ExtraFiles are duplicated without the flag).
func CloseOnExecFrom(first int) error {
	if err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11: mark the open descriptors /proc lists (Go raises
	// RLIMIT_NOFILE to its hard limit, often a million: too many to try
	// one by one in every moat process), else each possible one.
	if done, err := cloexecListed(first); done {
		return err
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	limit := int(min(rl.Cur, 1<<20))
	for fd := first; fd < limit; fd++ {
		if err := setCloexec(fd); err != nil {
			return err
		}
	}
	return nil
}

// cloexecListed marks the descriptors from first up that /proc/self/fd
// lists; done is false if /proc cannot be read.
func cloexecListed(first int) (done bool, err error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false, nil
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= first {
			if err := setCloexec(fd); err != nil {
				return true, err
			}
		}
	}
	return true, nil
}

// setCloexec marks fd close-on-exec; a descriptor that is not open (the
// directory ReadDir listed through is closed by now) is no error.
func setCloexec(fd int) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && err != unix.EBADF {
		return err
	}
	return nil
}
