package boot

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
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
const kept = 1<<unix.CAP_KILL | 1<<unix.CAP_SYS_PTRACE

// dropCapabilities reduces every thread of boot (effective and permitted)
// to the capabilities above. Threads created later are cloned from these,
// so they inherit the reduced sets.
func dropCapabilities() error {
	if err := procutil.SetCaps(kept); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	return nil
}
