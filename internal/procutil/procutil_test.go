package procutil

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseSignal(t *testing.T) {
	good := map[string]unix.Signal{
		"KILL": unix.SIGKILL, "SIGKILL": unix.SIGKILL, "kill": unix.SIGKILL, "9": unix.SIGKILL,
		"TERM": unix.SIGTERM, "sigusr1": unix.SIGUSR1, "RTMIN": 34, "RTMIN+3": 37, "SIGRTMAX-1": 63, "64": 64,
	}
	for in, want := range good {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "65", "NOPE", "SIGFOO", "RTMIN+40", "RTMAX+1"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q): expected an error", bad)
		}
	}
}

func TestStartTimeAndAlive(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st, err := StartTime(cmd.Process.Pid)
	if err != nil || st == 0 {
		t.Fatalf("StartTime: %v %v", st, err)
	}
	if !Alive(cmd.Process.Pid, st) {
		t.Fatal("running process reported dead")
	}
	if Alive(cmd.Process.Pid, st+1) {
		t.Fatal("a different start time must not match (pid reuse)")
	}
	cmd.Process.Kill()
	// A zombie counts as gone.
	if !WaitGone(cmd.Process.Pid, st, 5e9) {
		t.Fatal("killed process still alive")
	}
	cmd.Wait()
}

// SignalIf reaches a process only under its own start time: a pid taken
// over by another process (simulated by a wrong start time) is left alone.
func TestSignalIf(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	ppid, st, err := ParentAndStart(pid)
	if err != nil || ppid != os.Getpid() {
		t.Fatalf("ParentAndStart = %d, %d, %v; want parent %d", ppid, st, err, os.Getpid())
	}
	for _, wrong := range []uint64{st + 1, 0} {
		if err := SignalIf(pid, wrong, unix.SIGKILL); err != unix.ESRCH {
			t.Fatalf("SignalIf with start %d (not the process's %d) = %v, want ESRCH", wrong, st, err)
		}
	}
	if !Alive(pid, st) {
		t.Fatal("SignalIf with a wrong start time killed the process")
	}
	if err := SignalIf(pid, st, unix.SIGKILL); err != nil {
		t.Fatalf("SignalIf: %v", err)
	}
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != unix.SIGKILL {
		t.Fatalf("process ended with %v, want SIGKILL", err)
	}
}

func TestSealedExe(t *testing.T) {
	c, err := StartExeCopy()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	f := c.File
	if err := CheckSealed(f); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("write to the sealed executable succeeded")
	}
	if err := f.Truncate(0); err == nil {
		t.Fatal("truncate of the sealed executable succeeded")
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if CheckSealed(r) == nil {
		t.Fatal("a pipe passed CheckSealed")
	}
	self, _ := os.Stat("/proc/self/exe")
	st, _ := f.Stat()
	if st.Size() != self.Size() {
		t.Fatalf("copy has %d bytes, executable %d", st.Size(), self.Size())
	}
}

func TestDonations(t *testing.T) {
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	var d Donations
	d.Donate("sync-fd", r)
	d.DonateMany("io-fds", []*os.File{w, r})
	cmd := exec.Command("x")
	cmd.ExtraFiles = []*os.File{os.Stdin}
	d.Transfer(cmd)
	got := strings.Join(cmd.Args[1:], " ")
	if got != "--sync-fd=4 --io-fds=5,6" {
		t.Fatalf("flags %q", got)
	}
	if len(cmd.ExtraFiles) != 4 {
		t.Fatalf("extra files %d", len(cmd.ExtraFiles))
	}
	if l, err := ParseFDList("5,6"); err != nil || len(l) != 2 || l[1] != 6 {
		t.Fatalf("ParseFDList: %v %v", l, err)
	}
	if _, err := ParseFDList("5,x"); err == nil {
		t.Fatal("ParseFDList accepted garbage")
	}
}
