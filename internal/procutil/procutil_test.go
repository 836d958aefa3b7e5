package procutil

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
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
	c, err := startMemfdCopy()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	f := c.File
	if copied, err := CheckProtected(f); err != nil || !copied {
		t.Fatalf("CheckProtected(memfd) = %v, %v; want a copy", copied, err)
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
	if _, err := CheckProtected(r); err == nil {
		t.Fatal("a pipe passed CheckProtected")
	}
	self, _ := os.Stat("/proc/self/exe")
	st, _ := f.Stat()
	if st.Size() != self.Size() {
		t.Fatalf("copy has %d bytes, executable %d", st.Size(), self.Size())
	}
	checkRunsAndRefusesWrites(t, f)
}

// As real root the protected executable is moat itself, through a
// read-only overlay attached nowhere: it runs, and nothing reaches the
// binary through it (the CVE-2019-5736 path: reopening /proc/<pid>/exe, or
// the descriptor, for writing), not even after trying to clear its mount's
// read-only flag, which unwraps a read-only bind mount.
func TestReadOnlyExe(t *testing.T) {
	if !InitialUserNS() || os.Geteuid() != 0 {
		t.Skip("needs real root (a memfd copy is used otherwise: TestSealedExe)")
	}
	c, err := StartExeCopy(false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if copied, err := CheckProtected(c.File); err != nil || copied {
		t.Fatalf("CheckProtected(read-only overlay) = %v, %v; want no copy", copied, err)
	}
	path := "/proc/self/fd/" + strconv.Itoa(int(c.File.Fd()))
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.ReadFile("/proc/self/exe")
	if !bytes.Equal(got, self) {
		t.Fatal("the read-only overlay does not show the running executable")
	}
	checkRunsAndRefusesWrites(t, c.File)
	// What a process holding /proc/<pid>/exe can try: clear the read-only
	// flag of the mount (it unwraps a read-only bind mount rooted at the
	// file). Here the file is not the mount's root, and the overlay's
	// superblock is read-only whatever the mount says.
	err = unix.MountSetattr(int(c.File.Fd()), "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_RDONLY})
	t.Logf("mount_setattr clearing read-only on the executable: %v", err)
	if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
		w.Close()
		t.Fatal("opened moat for writing after clearing the mount's read-only flag")
	} else if !errors.Is(err, unix.EROFS) {
		t.Fatalf("open for writing after mount_setattr: %v, want EROFS", err)
	}
	// A writable file, or a plain read-only bind mount of one, would not
	// pass as protected.
	w, err := os.CreateTemp("", "exe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(w.Name())
	defer w.Close()
	if _, err := CheckProtected(w); err == nil {
		t.Fatal("a writable regular file passed CheckProtected")
	}
	bind, err := unix.OpenTree(unix.AT_FDCWD, w.Name(), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(bind)
	if err := unix.MountSetattr(bind, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckProtected(os.NewFile(uintptr(bind), "bind")); err == nil {
		t.Fatal("a read-only bind mount passed CheckProtected")
	}
}

// checkRunsAndRefusesWrites runs the test binary through f (as a helper runs
// moat) and tries to open it for writing the ways a container would.
func checkRunsAndRefusesWrites(t *testing.T, f *os.File) {
	t.Helper()
	path := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(f.Fd()))
	if out, err := exec.Command(path, "-test.run=^$").CombinedOutput(); err != nil {
		t.Fatalf("run through the protected executable: %v: %s", err, out)
	}
	before, _ := os.ReadFile(path)
	for _, flags := range []int{os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
		w, err := os.OpenFile(path, flags, 0)
		if err != nil {
			continue // a read-only mount refuses the open
		}
		_, werr := w.WriteAt([]byte("x"), 0)
		w.Close()
		if werr == nil {
			t.Fatalf("write through %s opened with flags %#x succeeded", path, flags)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("the protected executable changed")
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

// The fallback for kernels without close_range(CLOSE_RANGE_CLOEXEC) marks
// every open descriptor from first up, and none below.
func TestCloexecListed(t *testing.T) {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil { // without O_CLOEXEC
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	first := max(p[0], p[1])
	if done, err := cloexecListed(first); !done || err != nil {
		t.Fatalf("cloexecListed = %v, %v", done, err)
	}
	low, _ := unix.FcntlInt(uintptr(min(p[0], p[1])), unix.F_GETFD, 0)
	high, _ := unix.FcntlInt(uintptr(first), unix.F_GETFD, 0)
	if low&unix.FD_CLOEXEC != 0 || high&unix.FD_CLOEXEC == 0 {
		t.Errorf("flags below first %#x (want none), at first %#x (want FD_CLOEXEC)", low, high)
	}
}
