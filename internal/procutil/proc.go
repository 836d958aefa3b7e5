package procutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// StartTime returns a process's start time in clock ticks since boot
// (/proc/<pid>/stat field 22); with the pid it identifies a process across
// pid reuse.
func StartTime(pid int) (uint64, error) {
	_, start, err := ParentAndStart(pid)
	return start, err
}

// Proc is a process known by its pid and start time.
type Proc struct {
	Pid   int
	Start uint64
}

// ParentAndStart returns a process's parent pid and start time.
func ParentAndStart(pid int) (ppid int, start uint64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	f, _, err := statFields(data)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return ppid, start, err
}

// statFields splits /proc/<pid>/stat after the command name (which may hold
// spaces and parentheses): f[0] is field 3 (state).
func statFields(data []byte) ([]string, string, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 > len(data) {
		return nil, "", errors.New("malformed")
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 {
		return nil, "", errors.New("malformed")
	}
	return f, f[0], nil
}

// Alive reports whether pid is still the process that started at start and
// has not exited (a zombie counts as gone).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f, state, err := statFields(data)
	if err != nil || state == "Z" || state == "X" {
		return false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && (start == 0 || st == start)
}

// SignalIf sends sig to pid only if it is still the process that started at
// start (ESRCH otherwise). It holds a pidfd while it checks, so the signal
// cannot reach a process that took over the pid in between.
func SignalIf(pid int, start uint64, sig unix.Signal) error {
	if pid <= 0 || start == 0 {
		return unix.ESRCH // not a process this can tell from another
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !Alive(pid, start) {
		return unix.ESRCH
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}

// WaitGone waits until pid is gone or the timeout passes.
func WaitGone(pid int, start uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; ; d = min(d*2, 50*time.Millisecond) {
		if !Alive(pid, start) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(d)
	}
}

// ExitCode turns a wait status into the code a shell would show: the exit
// status, or 128+signal.
func ExitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}

// ExeCopy is a sealed memfd copy of the running executable, being made in
// the background. The container init and exec helpers run from it, so a
// process in the container can never reach (and overwrite) the host's moat
// binary through /proc/<pid>/exe (CVE-2019-5736). The descriptor exists at
// once (it can be donated to a child); its content is complete and immutable
// only after Wait returns nil, which the receiver checks with CheckSealed.
type ExeCopy struct {
	File *os.File
	done chan struct{}
	err  error
}

// StartExeCopy creates the memfd and starts filling and sealing it.
func StartExeCopy() (*ExeCopy, error) {
	// MFD_EXEC: with vm.memfd_noexec=1 (Linux 6.3+) a memfd is otherwise
	// sealed non-executable; older kernels reject the flag.
	fd, err := unix.MemfdCreate("moat", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if err == unix.EINVAL {
		fd, err = unix.MemfdCreate("moat", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	c := &ExeCopy{File: os.NewFile(uintptr(fd), "moat-sealed-exe"), done: make(chan struct{})}
	go func() {
		c.err = fillAndSeal(c.File)
		close(c.done)
	}()
	return c, nil
}

// Wait returns once the copy is sealed, or why it could not be.
func (c *ExeCopy) Wait() error {
	<-c.done
	return c.err
}

// Close waits for the copy and closes this process's descriptor.
func (c *ExeCopy) Close() {
	<-c.done
	c.File.Close()
}

func fillAndSeal(mf *os.File) error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("open own executable: %w", err)
	}
	defer src.Close()
	if _, err := io.Copy(mf, src); err != nil {
		return fmt.Errorf("copy executable to memfd: %w", err)
	}
	if _, err := unix.FcntlInt(mf.Fd(), unix.F_ADD_SEALS, requiredSeals); err != nil {
		return fmt.Errorf("seal executable memfd: %w", err)
	}
	return nil
}

// requiredSeals make a memfd immutable.
const requiredSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// CheckSealed verifies that f is a memfd that can no longer change.
func CheckSealed(f *os.File) error {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return fmt.Errorf("executable copy is not a sealable memfd: %w", err)
	}
	if seals&requiredSeals != requiredSeals {
		return fmt.Errorf("executable copy is not sealed (seals %#x)", seals)
	}
	return nil
}
