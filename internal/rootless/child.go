package rootless

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// reexecGuard marks the re-executed boot, so it never re-executes twice.
const reexecGuard = "_MOAT_USERNS_REEXECED_UNDOCUMENTED"

// syncTimeout bounds the wait for the parent's maps.
const syncTimeout = 30 * time.Second

// AwaitMapsAndReexec runs first in a boot that was started in a new user
// namespace without maps (the parent writes them with newuidmap). It waits
// until the parent closes syncFD, checks that this process is now root in
// the namespace, and re-executes the same command line without the sync
// flag: only an execve after the maps exist grants the namespace's
// capabilities. It returns only on error.
//
//	parent (CLI)                         boot (new user ns, no maps yet)
//	 |-- clone(CLONE_NEWUSER) ------------>| reads --sync-userns-fd
//	 | newuidmap / newgidmap <pid>         |
//	 |-- writes "1", closes -------------->| uid 0 now; execve(self) -> caps
func AwaitMapsAndReexec(syncFD int, args []string) error {
	if os.Getenv(reexecGuard) != "" {
		return errors.New("re-executed boot still waits for user namespace maps (loop)")
	}
	f := os.NewFile(uintptr(syncFD), "sync-userns")
	if err := waitReadable(f, syncTimeout); err != nil {
		return err
	}
	buf := make([]byte, 1)
	n, _ := f.Read(buf)
	f.Close()
	if n != 1 || buf[0] != '1' {
		return errors.New("the parent did not write the user namespace maps")
	}
	if os.Getuid() != 0 || os.Getgid() != 0 {
		return fmt.Errorf("not root in the new user namespace after the maps were written (uid %d gid %d)", os.Getuid(), os.Getgid())
	}
	env := append(os.Environ(), reexecGuard+"=1")
	err := syscall.Exec("/proc/self/exe", withoutSyncFlag(args), env)
	return fmt.Errorf("re-execute boot in the user namespace: %w", err)
}

// CheckReexeced verifies, after the re-exec, that the namespace's
// capabilities came with it, and clears the guard from the environment.
func CheckReexeced() error {
	if os.Getenv(reexecGuard) == "" {
		return nil
	}
	os.Unsetenv(reexecGuard)
	if !hasCap(unix.CAP_SYS_ADMIN) {
		return errors.New("re-executed boot has no capabilities in its user namespace (are the maps right?)")
	}
	return nil
}

func withoutSyncFlag(args []string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if strings.HasPrefix(a, "--sync-userns-fd=") {
			continue
		}
		out = append(out, a)
	}
	return out
}

func waitReadable(f *os.File, d time.Duration) error {
	ready, err := procutil.PollReadable(int(f.Fd()), d)
	if err != nil {
		return fmt.Errorf("wait for user namespace maps: %w", err)
	}
	if !ready {
		return fmt.Errorf("no user namespace maps after %s", d)
	}
	return nil
}

// hasCap reports whether the calling thread has c in its effective set.
func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}
