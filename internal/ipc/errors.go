package ipc

import "errors"

// Errors that keep their identity across processes: a peer that fails with
// one of these sends its wire name in Failed.Sentinel, and the receiver's
// errors.Is matches the same value. The table is explicit, and the values
// live here rather than in the packages that return them, so that every
// process (whatever it links) decodes the same names.
var (
	// ErrNoFuse marks a host where /dev/fuse cannot be used.
	ErrNoFuse = errors.New("/dev/fuse is not usable")
	// ErrTunUnusable marks a host where /dev/net/tun is absent or not
	// accessible to the user.
	ErrTunUnusable = errors.New("/dev/net/tun is not usable")
	// ErrNotRunning says runc's words: containerd's shim matches "container
	// not running" to tell a finished process from a failed kill.
	ErrNotRunning = errors.New("container not running")
)

// sentinels maps wire names to the errors above.
var sentinels = map[string]error{
	"no-fuse":      ErrNoFuse,
	"tun-unusable": ErrTunUnusable,
	"not-running":  ErrNotRunning,
}
