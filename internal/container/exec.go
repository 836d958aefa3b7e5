package container

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/sandbox"
	"github.com/moat-sandbox/moat/internal/spec"
)

// ExecOptions are `moat exec`'s arguments.
type ExecOptions struct {
	ID            string
	ProcessFile   string   // --process: a process.json; else built from the fields below
	Args          []string // the command
	Tty           bool
	Cwd           string
	Env           []string
	User          string // uid[:gid]
	AddCaps       []string
	NoNewPrivs    bool
	ConsoleSocket string
	Detach        bool
	PidFile       string
	PreserveFDs   int
	Stdio         [3]*os.File
}

// execSetupTimeout bounds boot's answer to an exec request.
const execSetupTimeout = 90 * time.Second

// Exec runs a process in a running container. Unless detached it waits for
// the process and returns its exit code; detached, a proxy process named in
// --pid-file waits instead and exits with the process's status.
func (r *Runtime) Exec(o ExecOptions) (int, error) {
	s, err := r.Store.Load(o.ID)
	if err != nil {
		return 1, err
	}
	if st := Status(s); st != specs.StateRunning && st != specs.StateCreated {
		return 1, wrongState(o.ID, "exec in", st)
	}
	p, err := execProcess(s.Spec(), o)
	if err != nil {
		return 1, err
	}
	if p.Terminal && o.ConsoleSocket == "" && o.Detach {
		return 1, fmt.Errorf("exec --tty --detach needs --console-socket")
	}
	if p.Terminal && o.ConsoleSocket == "" {
		if err := needTerminal(o.Stdio[0], "the process asks for a terminal (--tty, or terminal in --process)", "leave the terminal out"); err != nil {
			return 1, err
		}
	}
	if p.Terminal && o.ConsoleSocket == "" && p.ConsoleSize == nil {
		// Attached: the process starts with the size of our terminal.
		if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
			p.ConsoleSize = &specs.Box{Height: uint(ws.Row), Width: uint(ws.Col)}
		}
	}
	var sigs chan os.Signal
	if !o.Detach {
		// Caught from before the process exists: a signal sent the moment
		// it runs is forwarded, not lost (or fatal to the CLI, for SIGTERM).
		sigs = catchSignals()
		defer signal.Stop(sigs)
	}
	conn, started, master, err := requestExec(s.ControllerPath(), p, o)
	if err != nil {
		return 1, err
	}
	if master != nil && o.ConsoleSocket != "" {
		err = sendConsoleTo(o.ConsoleSocket, master)
		master.Close()
		master = nil
		if err != nil {
			conn.Send(ipc.ClientSignalRequested{Signal: int(unix.SIGKILL)})
			conn.Close()
			return 1, err
		}
	}
	if o.Detach {
		return 0, r.startExecProxy(conn, o.PidFile)
	}
	if err := writePidFile(o.PidFile, started.Pid); err != nil {
		conn.Close()
		return 1, err
	}
	var tty *attachedTty
	if master != nil {
		if tty, err = attachTty(master); err != nil {
			conn.Close()
			return 1, err
		}
		defer tty.restore()
	}
	code := WaitExec(conn, tty, sigs, nil)
	if tty != nil {
		tty.drain()
	}
	return code, nil
}

// requestExec asks boot to run p and returns the open connection on which
// boot will report the exit.
func requestExec(ctl string, p *specs.Process, o ExecOptions) (*ipc.Conn, *ipc.BootExecStarted, *os.File, error) {
	conn, err := sandbox.Dial(ctl)
	if err != nil {
		return nil, nil, nil, err
	}
	var fds []int
	if !p.Terminal {
		for _, f := range o.Stdio {
			if f == nil {
				f, _ = os.Open(os.DevNull)
				defer f.Close()
			}
			fds = append(fds, int(f.Fd()))
		}
	}
	for i := 0; i < o.PreserveFDs; i++ {
		fds = append(fds, 3+i)
	}
	conn.SetDeadline(time.Now().Add(execSetupTimeout))
	req := ipc.ClientExecRequested{Process: p, PreserveFDs: o.PreserveFDs, Detached: o.Detach}
	if err := conn.Send(req, fds...); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	var started ipc.BootExecStarted
	files, err := conn.WaitFor(&started)
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	conn.SetDeadline(time.Time{})
	var master *os.File
	if started.HasPty && len(files) == 1 {
		master = files[0]
	} else {
		for _, f := range files {
			f.Close()
		}
	}
	return conn, &started, master, nil
}

// catchSignals starts catching every signal the CLI may forward.
func catchSignals() chan os.Signal {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	return sigs
}

// WaitExec forwards the caller's signals (sigs, caught since before the
// request; nil: caught from now) to the exec'd process and returns its
// exit code. Used by `moat exec` and by the detached exec proxy, which
// passes ready: it is written once signals are caught.
func WaitExec(conn *ipc.Conn, tty *attachedTty, sigs chan os.Signal, ready *os.File) int {
	defer conn.Close()
	if sigs == nil {
		sigs = catchSignals()
	}
	defer signal.Stop(sigs)
	if ready != nil {
		ready.Write([]byte{1})
		ready.Close()
	}
	done := make(chan int, 1)
	go func() {
		var exited ipc.BootExecExited
		if _, err := conn.WaitFor(&exited); err != nil {
			done <- 255
			return
		}
		done <- exited.ExitCode
	}()
	return relaySignals(sigs, done, tty, func(sig unix.Signal) {
		_ = conn.Send(ipc.ClientSignalRequested{Signal: int(sig)})
	})
}

// startExecProxy leaves a `moat exec-proxy` behind that holds the exec
// connection, forwards signals and exits with the process's status; its pid
// goes to --pid-file so that shim-style waiters work.
// The proxy is named in the pid file only once it catches signals: a shim
// may signal it the moment exec returns.
func (r *Runtime) startExecProxy(conn *ipc.Conn, pidFile string) error {
	defer conn.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	var d procutil.Donations
	d.Donate("exec-conn-fd", conn.File())
	d.Donate("ready-fd", readyW)
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: append([]string{"moat"}, r.Config.ToFlags()...)}
	cmd.Args = append(cmd.Args, "exec-proxy")
	d.Transfer(cmd)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return fmt.Errorf("start exec proxy: %w", err)
	}
	readyR.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := readyR.Read(make([]byte, 1)); n != 1 {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("exec proxy did not become ready")
	}
	if err := writePidFile(pidFile, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return err
	}
	return cmd.Process.Release()
}

// execProcess builds the process to exec: --process as given, or the
// container's process with the command-line overrides.
func execProcess(s *specs.Spec, o ExecOptions) (*specs.Process, error) {
	if o.ProcessFile != "" {
		return loadProcessFile(o.ProcessFile)
	}
	if len(o.Args) == 0 {
		return nil, fmt.Errorf("exec: no command given")
	}
	if s == nil || s.Process == nil {
		return nil, fmt.Errorf("exec: the container has no process configuration")
	}
	base := *s.Process
	p := &base
	p.Args = o.Args
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	p.Env = append(append([]string{}, base.Env...), o.Env...)
	if o.Cwd != "" {
		p.Cwd = o.Cwd
	}
	if o.NoNewPrivs {
		p.NoNewPrivileges = true
	}
	if o.User != "" {
		if err := parseUser(o.User, &p.User); err != nil {
			return nil, err
		}
	}
	if len(o.AddCaps) > 0 {
		p.Capabilities = addCaps(base.Capabilities, o.AddCaps)
	}
	return p, spec.ValidateProcess(p, "process")
}

func loadProcessFile(path string) (*specs.Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--process: %w", err)
	}
	var p specs.Process
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%w: --process %s: %v", spec.ErrInvalid, path, err)
	}
	return &p, spec.ValidateProcess(&p, "process")
}

func parseUser(s string, u *specs.User) error {
	uidS, gidS, hasGid := strings.Cut(s, ":")
	uid, err := strconv.ParseUint(uidS, 10, 32)
	if err != nil {
		return fmt.Errorf("--user %q: want UID[:GID] as numbers", s)
	}
	u.UID = uint32(uid)
	if hasGid {
		gid, err := strconv.ParseUint(gidS, 10, 32)
		if err != nil {
			return fmt.Errorf("--user %q: want UID[:GID] as numbers", s)
		}
		u.GID = uint32(gid)
	}
	u.AdditionalGids = nil
	return nil
}

// addCaps adds capabilities to every set but ambient (runc exec --cap).
func addCaps(c *specs.LinuxCapabilities, add []string) *specs.LinuxCapabilities {
	out := &specs.LinuxCapabilities{}
	if c != nil {
		*out = *c
	}
	for _, n := range add {
		n = strings.ToUpper(n)
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		out.Bounding = append(append([]string{}, out.Bounding...), n)
		out.Effective = append(append([]string{}, out.Effective...), n)
		out.Permitted = append(append([]string{}, out.Permitted...), n)
		out.Inheritable = append(append([]string{}, out.Inheritable...), n)
	}
	return out
}

// sendConsoleTo connects to a console socket and sends it the pty master.
func sendConsoleTo(path string, master *os.File) error {
	sock, err := dialConsole(path)
	if err != nil {
		return err
	}
	defer sock.Close()
	return sendConsole(sock, master)
}
