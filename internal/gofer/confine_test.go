package gofer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/testutil/reach"
	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// The child side (role confinedRole, argument: what to do): confine this
// process as the gofer does, then make a call.
func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{confinedRole: confinedChild})
	os.Exit(m.Run())
}

const confinedRole = "confined-gofer"

func confinedChild(mode string) int {
	ppid := os.Getppid() // getppid is not on the list
	if err := confine(false); err != nil {
		os.Stderr.WriteString(err.Error())
		if errors.Is(err, errCgoBuild) {
			return 4
		}
		return 3
	}
	switch mode {
	case "allowed":
		unix.Getpid()
		// The runtime's restarted sleeps come back as restart_syscall
		// (nothing to restart: EINTR); uname is os and net's probe.
		if _, _, errno := unix.Syscall(unix.SYS_RESTART_SYSCALL, 0, 0, 0); errno != unix.EINTR {
			fmt.Println("restart_syscall:", errno)
			return 6
		}
		var uts unix.Utsname
		if err := unix.Uname(&uts); err != nil {
			fmt.Println("uname:", err)
			return 6
		}
	case "socket":
		unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0) // not on the list
	case "status":
		// Every thread, not just this one.
		tasks, _ := filepath.Glob("/proc/self/task/*/status")
		for _, t := range tasks {
			data, _ := os.ReadFile(t)
			fmt.Printf("== %s\n%s", t, data)
		}
	default:
		if _, err := reach.Try(mode, ppid); err != nil {
			return 5
		}
	}
	return 0
}

func runChild(t *testing.T, mode string) (*os.ProcessState, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (missing prerequisite: root, to drop capabilities it holds)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := reexec.Command(ctx, confinedRole, mode)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("child %s did not run", mode)
	}
	if cmd.ProcessState.ExitCode() == 4 {
		t.Skip("SKIP (missing prerequisite: a test binary built with CGO_ENABLED=0, as moat is; run make unit)")
	}
	return cmd.ProcessState, string(out)
}

func TestConfinedGoferServes(t *testing.T) {
	for _, mode := range []string{"allowed", reach.Allowed} {
		st, out := runChild(t, mode)
		if !st.Success() {
			t.Fatalf("a confined gofer could not make an allowed call (%s): %v %s", mode, st, out)
		}
	}
}

func TestConfinedGoferKilledByUnlistedSyscall(t *testing.T) {
	st, out := runChild(t, "socket")
	ws := st.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("socket(2) in the confined gofer: %v (%s), want death by SIGSYS", st, out)
	}
}

// TestConfinedGoferReachesNoOtherProcess: as uid 0 it needs no capability
// to signal or change the limits of another root process (tgkill,
// prlimit64, a descriptor's owner): only its own; nor may it make a user
// namespace of its own.
func TestConfinedGoferReachesNoOtherProcess(t *testing.T) {
	for _, mode := range append([]string{"ioctl-fiosetown"}, reach.Escapes...) {
		st, out := runChild(t, mode)
		ws := st.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
			t.Errorf("%s in the confined gofer: %v (%s), want death by SIGSYS", mode, st, out)
		}
	}
}

func TestConfinedGoferCapabilitiesOnEveryThread(t *testing.T) {
	_, out := runChild(t, "status")
	threads := strings.Split(out, "== ")[1:]
	if len(threads) < 2 {
		t.Fatalf("want several threads to check, got %d:\n%s", len(threads), out)
	}
	// CAP_CHOWN(0) CAP_DAC_OVERRIDE(1) CAP_FOWNER(3) CAP_FSETID(4) = 0x1b
	for _, th := range threads {
		for _, want := range []string{"CapEff:\t000000000000001b", "CapPrm:\t000000000000001b",
			"CapInh:\t0000000000000000", "CapBnd:\t000000000000001b", "CapAmb:\t0000000000000000",
			"NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(th, want) {
				t.Errorf("thread %s lacks %q", strings.SplitN(th, "\n", 2)[0], want)
			}
		}
	}
}
