package boot

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Capabilities boot keeps once the container is created, when it runs in a
// user namespace (rootless, or a spec with its own user namespace; issue
// 17). Everything boot does afterwards needs only these:
//   - CAP_KILL: signals to container processes of another uid (kill, kill
//     --all, teardown);
//   - CAP_SYS_PTRACE: /proc/PID/ns of container processes of another uid,
//     to list them without a cgroup (ps, kill --all);
//
// Exec helpers are forked by the spawner (spawner.go), which keeps
// CAP_SYS_ADMIN to join the container's pid namespace; boot needs it no more.
//
// The bounding set stays whole: exec helpers and hooks are executed as uid 0
// of boot's user namespace, and execve gives root the bounding set, so they
// still set up their processes per the spec (a container process gets
// exactly the spec's capabilities). With real root boot keeps its
// capabilities (not yet hardened).
const (
	keptEffective = 1<<unix.CAP_KILL | 1<<unix.CAP_SYS_PTRACE
	keptPermitted = keptEffective
)

// dropCapabilities reduces every thread of boot to the capabilities above.
// Threads created later are cloned from these, so they inherit the reduced
// sets.
func dropCapabilities() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = keptEffective, keptPermitted
	// AllThreadsSyscall runs the same capset(2) on every OS thread of the
	// process: capabilities are per thread.
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET,
		uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if errno != 0 {
		return fmt.Errorf("drop capabilities: %w", errno)
	}
	return nil
}
