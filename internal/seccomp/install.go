package seccomp

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads the filter with seccomp(SECCOMP_SET_MODE_FILTER) on the calling thread only
// (no TSYNC). It returns the listener fd when f.Notify (SECCOMP_FILTER_FLAG_NEW_LISTENER), else
// -1. Before loading, it asks the kernel whether every action the program returns is available
// (SECCOMP_GET_ACTION_AVAIL), so that an old kernel fails with an error instead of killing.
//
// Precondition: the caller runs on a locked OS thread (runtime.LockOSThread) that will not be
// unlocked, and has set no_new_privs or holds CAP_SYS_ADMIN. Every later syscall of this
// thread, the Go runtime's included, goes through the filter.
func (f *Filter) Install() (listenerFD int, err error) {
	if len(f.Program) == 0 || len(f.Program) > maxInsns {
		return -1, fmt.Errorf("seccomp: install: program has %d instructions (want 1..%d)",
			len(f.Program), maxInsns)
	}
	if err := checkActions(f.actions); err != nil {
		return -1, err
	}
	flags := f.Flags
	if f.Notify {
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	prog := unix.SockFprog{Len: uint16(len(f.Program)), Filter: &f.Program[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		uintptr(flags), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return -1, fmt.Errorf("seccomp: install filter (flags %#x): %w", flags, errno)
	}
	if f.Notify {
		return int(r), nil
	}
	return -1, nil
}

// checkActions fails when the kernel reports one of the actions unavailable. Kernels older
// than 4.14 cannot answer (EINVAL): the check is skipped there.
func checkActions(actions []uint32) error {
	for _, a := range actions {
		act := a
		_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0,
			uintptr(unsafe.Pointer(&act)))
		switch {
		case errno == 0:
		case errors.Is(errno, unix.EINVAL):
			return nil
		default:
			return fmt.Errorf("seccomp: action %s not available in this kernel: %w", actionName(a), errno)
		}
	}
	return nil
}

// actionName names a SECCOMP_RET_* action for messages.
func actionName(ret uint32) string {
	for _, a := range actionDefs[1:] { // skip SCMP_ACT_KILL, an alias of KILL_THREAD
		if a.ret == ret&unix.SECCOMP_RET_ACTION_FULL {
			return string(a.name)
		}
	}
	return fmt.Sprintf("%#x", ret)
}

// InstallAllThreads loads the filter on every thread of the process at once
// (SECCOMP_FILTER_FLAG_TSYNC), for a process that stays confined as a whole
// (the gofer) rather than one that is about to execve.
// Precondition: every thread has no_new_privs set or the caller holds
// CAP_SYS_ADMIN; the filter does not use SCMP_ACT_NOTIFY.
func (f *Filter) InstallAllThreads() error {
	if f.Notify {
		return errors.New("seccomp: a notify filter cannot be installed on all threads")
	}
	if len(f.Program) == 0 || len(f.Program) > maxInsns {
		return fmt.Errorf("seccomp: install: program has %d instructions (want 1..%d)", len(f.Program), maxInsns)
	}
	if err := checkActions(f.actions); err != nil {
		return err
	}
	prog := unix.SockFprog{Len: uint16(len(f.Program)), Filter: &f.Program[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		uintptr(f.Flags|unix.SECCOMP_FILTER_FLAG_TSYNC), uintptr(unsafe.Pointer(&prog)))
	if errno != 0 {
		return fmt.Errorf("seccomp: install filter on all threads: %w", errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronised", r)
	}
	return nil
}
