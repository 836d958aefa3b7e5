package procutil

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Confinement shared by moat's confined helpers (the gofer, `moat net`):
// capabilities and no_new_privs belong to threads, and a Go program has
// many. AllThreads applies each change to every thread at once, and threads
// created later copy a changed one, so the result is a re-exec's without a
// second Go start-up. It needs a moat built without cgo, as moat is.

// ErrCgoBuild: a helper cannot confine all its threads in a cgo build.
var ErrCgoBuild = errors.New("moat was built with cgo: a helper cannot drop capabilities on all its threads; build with CGO_ENABLED=0 (make build)")

// AllThreads runs a syscall on every thread of the process.
func AllThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	switch errno {
	case 0:
		return nil
	case unix.ENOTSUP:
		return ErrCgoBuild
	}
	return errno
}

// DropCaps reduces every thread's capability sets to keep (bounding,
// effective, permitted, inheritable; ambient cleared). An empty keep drops
// every capability.
func DropCaps(keep []uintptr) error {
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	for c := uintptr(0); c <= 63; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		err := AllThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if err == unix.EINVAL {
			break // past the kernel's last capability
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := AllThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return SetCaps(mask)
}

// SetCaps sets every thread's effective and permitted capabilities to mask
// (a bit per capability) and its inheritable ones to none; the bounding
// set is left as it is. Threads created later copy these sets.
func SetCaps(mask uint64) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	if err := AllThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

// SetNoNewPrivs sets no_new_privs on every thread.
func SetNoNewPrivs() error {
	if err := AllThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return nil
}

// PivotInto makes dir (a mount point) the root, detaches everything else
// and remounts the new root read-only, nosuid, nodev, noexec; afterwards no
// /proc, /dev or host path is reachable.
// Precondition: the process has a mount namespace of its own whose mounts
// do not propagate back (MS_SLAVE), and CAP_SYS_ADMIN over it.
func PivotInto(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into %s: %w", dir, err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's tree: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("make the new root read-only: %w", err)
	}
	return nil
}
