// Package doinit runs inside `moat do`'s sandbox as its first process
// (`moat do-init -- CMD...`): pid 1 of the sandbox's pid namespace. The
// kernel delivers to a namespace's pid 1 only the signals it has a handler
// for, so a command run there directly would ignore ^C, SIGTERM and the
// rest. This reaper runs the command as its child instead, hands it the
// terminal's foreground, forwards every signal to it, reaps orphans, and
// exits with the command's status (128+N when signal N ended it; 127 when
// there is no such command, 126 when it cannot be run).
//
// It is the only moat code that runs inside the sandbox after execve, with
// the sandbox's credentials, capabilities and seccomp filter: it holds no
// descriptor or privilege the command lacks, and is not dumpable (the
// command, same uid, cannot ptrace it).
package doinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// Exit statuses of a command that did not run, as the shell's.
const (
	ExitNotFound  = 127
	ExitCannotRun = 126
)

// Args are `moat do-init`'s arguments.
type Args struct {
	Command []string
	// ChangesFD, if >= 0, receives the upper layer shown at Upper once the
	// command has ended (ipc.UpperEntry), with file contents if Content.
	ChangesFD int
	Upper     string
	Content   bool
	// UID and GID, if >= 0, are the command's ids in a user namespace of
	// its own, nested in the sandbox's and mapping them to the sandbox's
	// root (the caller outside). SeccompFD then holds the seccomp profile
	// (OCI JSON), which the second stage installs just before executing
	// the command: the reaper itself must still create that namespace.
	UID, GID  int
	SeccompFD int
	// ReadyFD, if >= 0, gets one byte once the reaper handles signals
	// (before, as pid 1 of a Go program starting up, a signal would end it
	// with exit 2): moat do treats a ^C before that as one before the
	// command ran.
	ReadyFD int
	// Stage2 is the reaper's child in the nested namespace: it installs the
	// profile read from SeccompFD and executes the command.
	Stage2 bool
}

// Main runs the command and returns its exit status.
func Main(a Args, stderr io.Writer) int {
	if a.Stage2 {
		return execFiltered(a, stderr)
	}
	code := run(a, stderr)
	if a.ChangesFD >= 0 {
		endOthers()
		out := os.NewFile(uintptr(a.ChangesFD), "changes")
		if err := streamUpper(a.Upper, out, a.Content); err != nil {
			fmt.Fprintf(stderr, "moat do: listing the changes: %v\n", err)
		}
		out.Close()
	}
	return code
}

// lookPath finds the command as the shell would, or says why not with the
// shell's status.
func lookPath(name string, stderr io.Writer) (string, int) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, 0
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "moat do: %s: command not found\n", name)
		return "", ExitNotFound
	}
	fmt.Fprintf(stderr, "moat do: %s: %v\n", name, unwrapPath(err))
	return "", ExitCannotRun
}

// run runs the command as a child (through the second stage in a nested
// user namespace when asked) and returns its exit status.
func run(a Args, stderr io.Writer) int {
	args := a.Command
	if len(args) == 0 {
		fmt.Fprintln(stderr, "moat do: no command")
		return ExitCannotRun
	}
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	attr := &syscall.SysProcAttr{}
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr}
	path := ""
	if a.UID >= 0 {
		// The second stage is this executable again, in the nested user
		// namespace, as the caller's ids; the profile goes on as its fd 3.
		path = "/proc/self/exe"
		args = append([]string{"moat", "do-init", "--stage2", "--seccomp-fd=3", "--"}, a.Command...)
		files = append(files, os.NewFile(uintptr(a.SeccompFD), "seccomp"))
		attr.Cloneflags = unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: a.UID, HostID: 0, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: a.GID, HostID: 0, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		attr.Credential = &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), NoSetGroups: true}
	} else {
		var code int
		if path, code = lookPath(args[0], stderr); code != 0 {
			return code
		}
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	if a.ReadyFD >= 0 {
		ready := os.NewFile(uintptr(a.ReadyFD), "ready")
		_, _ = ready.Write([]byte{1})
		ready.Close()
	}
	if IsTerminal(0) {
		// The command's own process group, in the terminal's foreground:
		// ^C and window changes reach it, not the reaper.
		attr.Setpgid, attr.Foreground, attr.Ctty = true, true, 0
		signal.Ignore(unix.SIGTTOU, unix.SIGTTIN)
	}
	proc, err := os.StartProcess(path, args, &os.ProcAttr{Env: os.Environ(), Files: files, Sys: attr})
	if err != nil {
		fmt.Fprintf(stderr, "moat do: %s: %v\n", a.Command[0], unwrapPath(err))
		if errors.Is(err, os.ErrNotExist) {
			return ExitNotFound
		}
		return ExitCannotRun
	}
	return supervise(proc.Pid, sigs)
}

// maxProfile bounds the seccomp profile read from SeccompFD.
const maxProfile = 1 << 20

// execFiltered is the second stage: it installs the seccomp profile on
// this thread and executes the command in its place.
func execFiltered(a Args, stderr io.Writer) int {
	runtime.LockOSThread() // the filter is this thread's; so is the execve
	var filter *seccomp.Filter
	if a.SeccompFD >= 0 {
		f := os.NewFile(uintptr(a.SeccompFD), "seccomp")
		data, err := io.ReadAll(io.LimitReader(f, maxProfile))
		f.Close()
		var p specs.LinuxSeccomp
		if err == nil && len(data) > 0 {
			if err = json.Unmarshal(data, &p); err == nil {
				filter, err = seccomp.Compile(&p)
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "moat do: seccomp profile: %v\n", err)
			return ExitCannotRun
		}
	}
	path, code := lookPath(a.Command[0], stderr)
	if code != 0 {
		return code
	}
	if filter != nil {
		if _, err := filter.Install(); err != nil {
			fmt.Fprintf(stderr, "moat do: %v\n", err)
			return ExitCannotRun
		}
	}
	err := unix.Exec(path, a.Command, os.Environ())
	fmt.Fprintf(stderr, "moat do: %s: %v\n", a.Command[0], err)
	if errors.Is(err, unix.ENOENT) {
		return ExitNotFound
	}
	return ExitCannotRun
}

// supervise forwards signals to the command and reaps every child until
// the command has ended.
func supervise(pid int, sigs chan os.Signal) int {
	for {
		if code, done := reap(pid); done {
			return code
		}
		s := (<-sigs).(unix.Signal)
		switch s {
		case unix.SIGCHLD, unix.SIGURG, unix.SIGTTOU, unix.SIGTTIN:
			continue
		}
		_ = unix.Kill(pid, s)
	}
}

// reap collects every exited child; done when pid was one of them.
func reap(pid int) (int, bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || got <= 0 {
			return 0, false
		}
		if got != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), true
		case ws.Signaled():
			return 128 + int(ws.Signal()), true
		}
	}
}

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}
