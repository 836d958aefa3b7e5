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
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
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
}

// Main runs the command and returns its exit status.
func Main(a Args, stderr io.Writer) int {
	code := run(a.Command, stderr)
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

// run runs args as a child and returns its exit status.
func run(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "moat do: no command")
		return ExitCannotRun
	}
	_ = unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	path, err := exec.LookPath(args[0])
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "moat do: %s: command not found\n", args[0])
			return ExitNotFound
		}
		fmt.Fprintf(stderr, "moat do: %s: %v\n", args[0], unwrapPath(err))
		return ExitCannotRun
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	tty := IsTerminal(0)
	attr := &syscall.SysProcAttr{}
	if tty {
		// The command's own process group, in the terminal's foreground:
		// ^C and window changes reach it, not the reaper.
		attr.Setpgid, attr.Foreground, attr.Ctty = true, true, 0
		signal.Ignore(unix.SIGTTOU, unix.SIGTTIN)
	}
	proc, err := os.StartProcess(path, args, &os.ProcAttr{
		Env: os.Environ(), Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}, Sys: attr,
	})
	if err != nil {
		fmt.Fprintf(stderr, "moat do: %s: %v\n", args[0], unwrapPath(err))
		if errors.Is(err, os.ErrNotExist) {
			return ExitNotFound
		}
		return ExitCannotRun
	}
	return supervise(proc.Pid, sigs)
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
