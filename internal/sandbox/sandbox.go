// Package sandbox is the CLI's handle on `moat boot`: it spawns boot with
// its donated descriptors, waits for the created container, and talks to
// boot's controller socket afterwards.
package sandbox

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
)

// Options describe the sandbox to start.
type Options struct {
	ID string
	// Bundle is the absolute bundle directory.
	Bundle string
	// Plan is what the CLI worked out for the container (boot's --plan-fd).
	Plan     *ipc.Plan
	StateDir string
	// Config is the effective configuration: the operator's flags with the
	// bundle's annotations applied. Boot gets it as its flags.
	Config *config.Config
	// LogFile receives boot's log lines (the --log file, or one in the
	// state directory).
	LogFile *os.File
	// Stdio are the container's stdin, stdout and stderr.
	Stdio [3]*os.File
	// Extra are passed to the container at fd 3.. (--preserve-fds, then
	// LISTEN_FDS).
	Extra     []*os.File
	ListenFDs int
	// UserNS says whether boot gets a user namespace and with which maps.
	UserNS *rootless.Mode
	// Exe is the copy of moat that boot runs the container init and exec
	// helpers from; it is still being made when boot starts.
	Exe *procutil.ExeCopy
	// Hosted runs boot in this process instead of spawning `moat boot`
	// (a foreground `moat run`: one process start fewer). The caller
	// relays signals to the container and is a child subreaper, since it
	// becomes init's parent. Never with UserNS.NewUserNS: boot's user
	// namespace needs a process of its own.
	Hosted bool
}

// Sandbox is a started boot: a `moat boot` process, or boot hosted in this
// process.
type Sandbox struct {
	// Pid is the supervisor's process: boot's, or ours when hosted.
	Pid     int
	Created ipc.BootCreated
	// Pty is the container's terminal master (process.terminal).
	Pty *os.File

	create *ipc.Conn
	cmd    *exec.Cmd   // `moat boot`; nil when hosted
	hosted *hostedBoot // nil when boot is its own process
}

// CreateTimeout bounds `create` from boot's start to the created container.
const CreateTimeout = 5 * time.Minute

// Start spawns boot and waits until the container is created, or boot
// reports why it is not. On failure boot has exited and cleaned up.
func Start(o Options, log *slog.Logger) (*Sandbox, error) {
	if o.Hosted {
		return startHosted(o, log)
	}
	ln, err := Listen(filepath.Join(o.StateDir, "ctl.sock"))
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	planFile, err := ipc.PlanMemfd(o.Plan)
	if err != nil {
		return nil, err
	}
	defer planFile.Close()
	cliEnd, bootEnd, err := ipc.SocketPair("create-sync")
	if err != nil {
		return nil, err
	}
	cmd := bootCommand(o)
	var d procutil.Donations
	d.Donate("exe-fd", o.Exe.File)
	d.Donate("plan-fd", planFile)
	d.Donate("create-sync-fd", bootEnd)
	d.Donate("controller-fd", ln)
	d.Donate("log-fd", o.LogFile)
	d.DonateMany("stdio-fds", stdioFiles(o.Stdio))
	if len(o.Extra) > 0 {
		d.DonateMany("extra-fds", o.Extra)
	}
	syncParent, syncChild, err := setUserNS(cmd, o.UserNS, &d, o.Exe.File)
	if syncChild != nil {
		defer syncChild.Close()
	}
	if err != nil {
		cliEnd.Close()
		bootEnd.Close()
		return nil, err
	}
	d.Transfer(cmd)
	d.Log(log, "boot")
	procutil.Trace("cli", "spawning boot")
	err = cmd.Start()

	procutil.Trace("cli", "boot spawned")
	bootEnd.Close()
	if err != nil {
		cliEnd.Close()
		return nil, fmt.Errorf("start moat boot: %w", err)
	}
	sb := &Sandbox{Pid: cmd.Process.Pid, cmd: cmd, create: ipc.NewConn(cliEnd)}
	if syncParent != nil {
		err = writeMaps(o.UserNS, cmd.Process.Pid, syncParent)
		procutil.Trace("cli", "user namespace maps written")
	}
	if err := sb.awaitCreated(o, err); err != nil {
		return nil, err
	}
	return sb, nil
}

// awaitCreated tells boot the executable copy is sealed and waits for the
// created container; on failure (or a failed err from before) boot is
// gone when it returns.
func (sb *Sandbox) awaitCreated(o Options, err error) error {
	if err == nil {
		err = o.Exe.Wait()
		procutil.Trace("cli", "executable sealed")
	}
	if err == nil {
		err = sb.create.Send(ipc.ClientExeSealed{})
	}
	if err == nil {
		err = sb.waitCreated()
	}
	if err != nil {
		sb.create.Close()
		sb.reap(10 * time.Second)
		return err
	}
	procutil.Trace("cli", "created")
	return nil
}

func bootCommand(o Options) *exec.Cmd {
	args := append([]string{"moat"}, o.Config.ToFlags()...)
	args = append(args, "boot", "--id="+o.ID, "--bundle="+o.Bundle)
	if o.ListenFDs > 0 {
		args = append(args, "--listen-fds="+strconv.Itoa(o.ListenFDs))
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: args, Env: os.Environ()}
	// Boot is a daemon: its own session, so a terminal's hangup or ^C
	// reaches the container only through the CLI's forwarding.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// stdioFiles maps missing stdio to /dev/null so boot always gets three.
func stdioFiles(s [3]*os.File) []*os.File {
	out := make([]*os.File, 3)
	for i, f := range s {
		if f == nil {
			f, _ = os.Open(os.DevNull)
		}
		out[i] = f
	}
	return out
}

func (sb *Sandbox) waitCreated() error {
	sb.create.SetDeadline(time.Now().Add(CreateTimeout))
	files, err := sb.create.WaitFor(&sb.Created)
	if err != nil {
		if errors.Is(err, ipc.ErrPeerClosed) {
			return fmt.Errorf("moat boot exited before the container was created (see its log)")
		}
		return err
	}
	if sb.Created.HasPty {
		if len(files) != 1 {
			for _, f := range files {
				f.Close()
			}
			return errors.New("protocol error: BootCreated without its pty")
		}
		sb.Pty = files[0]
	}
	return nil
}

// Commit tells boot the container is recorded; until then boot tears the
// container down if the CLI goes away.
func (sb *Sandbox) Commit() error {
	defer sb.create.Close()
	return sb.create.Send(ipc.ClientCreateCommitted{})
}

// Abort makes boot tear the container down (by closing the create socket
// before Commit) and waits for it to exit.
func (sb *Sandbox) Abort() {
	sb.create.Close()
	if sb.Pty != nil {
		sb.Pty.Close()
	}
	sb.reap(10 * time.Second)
}

// reap waits for boot's exit, killing it after timeout. A hosted boot
// cannot be killed: after timeout it is left to end with this process
// (init's parent-death signal takes the container with it).
func (sb *Sandbox) reap(timeout time.Duration) {
	if sb.hosted != nil {
		sb.hosted.waitFor(timeout)
		return
	}
	done := make(chan struct{})
	go func() { sb.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		sb.cmd.Process.Kill()
		<-done
	}
}

// Wait waits for boot to exit (a hosted boot: to return) and returns the
// container's exit code.
func (sb *Sandbox) Wait() int {
	if sb.hosted != nil {
		<-sb.hosted.done
		return sb.hosted.code
	}
	code, _ := procutil.WaitCode(sb.cmd)
	return code
}

// WaitGone waits up to timeout for boot to end and reports whether it did.
func (sb *Sandbox) WaitGone(start uint64, timeout time.Duration) bool {
	if sb.hosted != nil {
		return sb.hosted.waitFor(timeout)
	}
	return procutil.WaitGone(sb.Pid, start, timeout)
}

// Hosted reports whether boot runs in this process.
func (sb *Sandbox) Hosted() bool { return sb.hosted != nil }
