package seccomp

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Data is struct seccomp_data: what the filter (and a notification) sees of a syscall.
type Data struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// Notif is struct seccomp_notif, one syscall waiting for the supervisor's answer.
type Notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  Data
}

// NotifResp is struct seccomp_notif_resp. Error is a negative errno (0: return Val); Flags may
// be unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE to let the syscall run.
type NotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// Sizes the ioctl numbers encode: unix.SECCOMP_IOCTL_NOTIF_RECV (0x50), _SEND (0x18).
const (
	sizeofNotif     = 80
	sizeofNotifResp = 24
)

// Compile-time checks that the Go structs have the kernel's sizes.
var (
	_ [sizeofNotif - unsafe.Sizeof(Notif{})]byte
	_ [unsafe.Sizeof(Notif{}) - sizeofNotif]byte
	_ [sizeofNotifResp - unsafe.Sizeof(NotifResp{})]byte
	_ [unsafe.Sizeof(NotifResp{}) - sizeofNotifResp]byte
)

// NotifReceive waits for the next notification on a listener fd from Install. It retries on
// EINTR; it returns ENOENT-wrapping errors when the target died before it was read.
// Precondition: fd is blocking (as Install returns it); use poll(2) first to bound the wait.
func NotifReceive(fd int) (*Notif, error) {
	for {
		n := &Notif{} // the kernel requires a zeroed buffer
		err := ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("seccomp: receive notification: %w", err)
		}
		return n, nil
	}
}

// NotifRespond answers notification resp.ID. ENOENT means the target is gone or was
// interrupted: the answer is moot.
func NotifRespond(fd int, resp *NotifResp) error {
	for {
		err := ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(resp))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("seccomp: respond to notification %d: %w", resp.ID, err)
		}
		return nil
	}
}

// NotifIDValid reports whether notification id is still pending (its target alive and still
// in the syscall): check it after reading the target's memory, before acting on what was read.
func NotifIDValid(fd int, id uint64) bool {
	return ioctlPtr(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}
