package procutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
// has not exited (a zombie counts as gone). A zero start time is unknown:
// such a pid cannot be told from a later process's, and counts as gone.
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
	return err == nil && start != 0 && st == start
}

// SignalIf sends sig to pid only if it is still the process that started at
// start (ESRCH otherwise). It holds a pidfd while it checks, so the signal
// cannot reach a process that took over the pid in between.
func SignalIf(pid int, start uint64, sig unix.Signal) error {
	if pid <= 0 || start == 0 {
		return unix.ESRCH // see Alive
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

// WaitTimeout runs f and reports whether it returned within d (f goes on
// running otherwise: use it for waits that end on their own).
func WaitTimeout(f func(), d time.Duration) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	t := time.NewTimer(max(d, 0))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
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

// PollReadable waits up to d for fd to become readable (a pidfd: the
// process exited), retrying after signals. It reports whether it did.
func PollReadable(fd int, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(max(time.Until(deadline), 0).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		return n > 0, nil
	}
}

// WaitCode waits for cmd and returns the code a shell would show (see
// ExitCode); 255 when it left no status, with the wait's error.
// Precondition: cmd was started.
func WaitCode(cmd *exec.Cmd) (int, error) {
	err := cmd.Wait()
	if cmd.ProcessState != nil {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			return ExitCode(ws), nil
		}
	}
	if err == nil {
		return 0, nil
	}
	return 255, err
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

// ExeCopy is the protected executable the container init and exec helpers
// run from, so that a process in the container can never reach (and
// overwrite) the host's moat binary through /proc/<pid>/exe
// (CVE-2019-5736). As real root it is moat itself, opened through a
// read-only overlay attached nowhere (made at once, shared page cache, no
// copy: readOnlyExe); otherwise a sealed memfd copy, made in the
// background. The descriptor exists at once
// (it can be donated to a child); a copy is complete and immutable only
// after Wait returns nil, which the receiver checks with CheckProtected.
type ExeCopy struct {
	File *os.File
	done chan struct{}
	err  error
}

// StartExeCopy returns the read-only mount of moat, or creates the memfd
// and starts filling and sealing it. forUserNS: the helpers will run in a
// new user namespace, where a file of the host's root cannot be executed;
// the memfd copy can be given to the namespace's root.
func StartExeCopy(forUserNS bool) (*ExeCopy, error) {
	if forUserNS {
		return startMemfdCopy()
	}
	if f, err := readOnlyExe(); err == nil {
		c := &ExeCopy{File: f, done: make(chan struct{})}
		close(c.done)
		return c, nil
	}
	return startMemfdCopy()
}

// startMemfdCopy creates the memfd and starts filling and sealing it.
func startMemfdCopy() (*ExeCopy, error) {
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

// readOnlyExe opens the running executable through a read-only overlay
// whose only layers are its directory and an empty tmpfs, mounted nowhere
// (no mount namespace has it: no mount events anywhere). An overlay without
// an upper layer is read-only in its superblock: unlike a read-only bind
// mount, whose flag mount_setattr clears again for anyone with
// CAP_SYS_ADMIN, nothing makes it writable (runc 1.2 seals its binary the
// same way). Mounting needs CAP_SYS_ADMIN, and an overlay made inside a user
// namespace would carry that namespace's ids, so only real root uses it.
func readOnlyExe() (*os.File, error) {
	if !InitialUserNS() {
		return nil, unix.EPERM
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	// A second, empty layer: an overlay without an upper layer needs two.
	empty, err := detachedMount("tmpfs", [][2]string{{"size", "4k"}, {"mode", "0555"}}, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("empty layer: %w", err)
	}
	defer unix.Close(empty)
	ovl, err := detachedMount("overlay", [][2]string{
		{"lowerdir", filepath.Dir(exe) + ":/proc/self/fd/" + strconv.Itoa(empty)},
		{"xino", "off"}, {"redirect_dir", "off"}, {"metacopy", "off"}, {"index", "off"},
	}, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	defer unix.Close(ovl)
	fd, err := unix.Openat(ovl, filepath.Base(exe), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "moat-ro-exe"), nil
}

// detachedMount creates a file system with the given options and returns
// its mount, attached nowhere.
func detachedMount(fstype string, opts [][2]string, attrs int) (int, error) {
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, err
	}
	defer unix.Close(fs)
	for _, o := range opts {
		if err := unix.FsconfigSetString(fs, o[0], o[1]); err != nil {
			return -1, fmt.Errorf("%s=%s: %w", o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	return unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
}

// InitialUserNS reports whether this process is in the host's user
// namespace (the identity map of every id).
func InitialUserNS() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
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
	// F_SEAL_WRITE fails with EBUSY while the kernel still holds extra
	// references to the copy's pages (seen once on a loaded 2-core machine,
	// after the kernel's own ~0.3 s wait): try again, a bounded number of
	// times.
	for attempt := 1; attempt <= sealAttempts; attempt++ {
		if _, err = unix.FcntlInt(mf.Fd(), unix.F_ADD_SEALS, requiredSeals); err != unix.EBUSY {
			break
		}
		time.Sleep(time.Duration(attempt) * 20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("seal executable memfd: %w", err)
	}
	return nil
}

// sealAttempts bounds the retries of a seal refused with EBUSY.
const sealAttempts = 5

// requiredSeals make a memfd immutable.
const requiredSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// CheckProtected verifies that f cannot change: a sealed memfd (copied is
// true: it holds a copy of the binary in memory) or a regular file of an
// overlay whose superblock is read-only (readOnlyExe).
func CheckProtected(f *os.File) (copied bool, err error) {
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err == nil {
		if seals&requiredSeals != requiredSeals {
			return true, fmt.Errorf("executable copy is not sealed (seals %#x)", seals)
		}
		return true, nil
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("protected executable: %w", err)
	}
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		return false, fmt.Errorf("protected executable: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || fs.Type != unix.OVERLAYFS_SUPER_MAGIC || fs.Flags&unix.ST_RDONLY == 0 {
		return false, errors.New("executable is neither a sealed memfd nor on a read-only overlay")
	}
	return false, nil
}
