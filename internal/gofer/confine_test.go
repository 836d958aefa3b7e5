package gofer

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The child side: do what the gofer's serving phase gets (bounding set cut,
// no_new_privs, re-exec, seccomp), then make a call.
func TestMain(m *testing.M) {
	mode := os.Getenv("GOFER_CONFINE_CHILD")
	switch {
	case mode == "":
		os.Exit(m.Run())
	case strings.HasPrefix(mode, "cut-"):
		runtime.LockOSThread()
		if err := cutBounding(fileServerCaps); err != nil {
			fail(err)
		}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fail(err)
		}
		os.Setenv("GOFER_CONFINE_CHILD", strings.TrimPrefix(mode, "cut-"))
		fail(syscall.Exec("/proc/self/exe", os.Args, os.Environ()))
	}
	if err := checkConfined(); err != nil {
		fail(err)
	}
	if err := installFilter(); err != nil {
		fail(err)
	}
	switch mode {
	case "allowed":
		unix.Getpid()
	case "socket":
		unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0) // not on the list
	case "status":
		data, _ := os.ReadFile("/proc/self/status")
		os.Stdout.Write(data)
	}
	os.Exit(0)
}

func fail(err error) {
	os.Stderr.WriteString(err.Error())
	os.Exit(3)
}

func runChild(t *testing.T, mode string) (*os.ProcessState, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIP (missing prerequisite: root, to drop capabilities it holds)")
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "GOFER_CONFINE_CHILD=cut-"+mode)
	out, _ := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		t.Fatalf("child %s did not run", mode)
	}
	return cmd.ProcessState, string(out)
}

func TestConfinedGoferServes(t *testing.T) {
	st, out := runChild(t, "allowed")
	if !st.Success() {
		t.Fatalf("a confined gofer could not make an allowed call: %v %s", st, out)
	}
}

func TestConfinedGoferKilledByUnlistedSyscall(t *testing.T) {
	st, out := runChild(t, "socket")
	ws := st.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("socket(2) in the confined gofer: %v (%s), want death by SIGSYS", st, out)
	}
}

func TestConfinedGoferCapabilities(t *testing.T) {
	_, out := runChild(t, "status")
	// CAP_CHOWN(0) CAP_DAC_OVERRIDE(1) CAP_FOWNER(3) CAP_FSETID(4) = 0x1b
	for _, want := range []string{"CapEff:\t000000000000001b", "CapPrm:\t000000000000001b",
		"CapBnd:\t000000000000001b", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("confined gofer status lacks %q:\n%s", want, out)
		}
	}
}
