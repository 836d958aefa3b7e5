package fsys

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkip lists the posixtest cases that do not apply, and why.
var posixSkip = map[string]string{
	// It expects a second F_SETLK from the same process, on another
	// descriptor, to conflict: per-descriptor (OFD) semantics that appear only
	// when locks are forwarded to a server that takes OFD locks. Locks stay in
	// the kernel here (no EnableLocks), with POSIX per-process semantics, as
	// on a local file system, where this test fails the same way.
	"FcntlFlockLocksFile": "POSIX record locks are per process; the test expects OFD semantics",
}

// TestPosix runs go-fuse's POSIX conformance tests on a read-write mount.
func TestPosix(t *testing.T) {
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkip[name]; ok {
				t.Skip(why)
			}
			m := rwMount(t)
			posixtest.All[name](t, m.dir)
		})
	}
}
