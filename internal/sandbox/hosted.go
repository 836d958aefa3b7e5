package sandbox

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/boot"
	"github.com/moat-sandbox/moat/internal/ipc"
	mlog "github.com/moat-sandbox/moat/internal/log"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// hostedBoot is boot running in this process (Options.Hosted).
type hostedBoot struct {
	done chan struct{} // closed when boot.Main has returned
	code int           // its exit code, valid after done
}

// waitFor waits up to timeout for boot.Main to return and reports whether
// it did.
func (h *hostedBoot) waitFor(timeout time.Duration) bool {
	select {
	case <-h.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// startHosted runs boot in this process: the same create protocol over the
// same socket pair as with `moat boot`, without a process start, the flags,
// or the plan's encoding. Boot gets duplicates of what it would be donated
// and closes them itself; the caller keeps its own descriptors.
// Precondition: o.UserNS does not ask for a new user namespace; the caller
// is a child subreaper (init becomes its child) and relays signals.
func startHosted(o Options, log *slog.Logger) (sb *Sandbox, err error) {
	if o.UserNS != nil && o.UserNS.NewUserNS {
		return nil, fmt.Errorf("boot in a user namespace cannot be hosted by the CLI")
	}
	var owned []int // boot's once it runs; closed here on failure
	defer func() {
		if err != nil {
			for _, fd := range owned {
				unix.Close(fd)
			}
		}
	}()
	dup := func(f *os.File) (int, error) {
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return -1, fmt.Errorf("hand a descriptor to boot: %w", err)
		}
		owned = append(owned, fd)
		return fd, nil
	}
	ln, err := Listen(filepath.Join(o.StateDir, "ctl.sock"))
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	cliEnd, bootEnd, err := ipc.SocketPair("create-sync")
	if err != nil {
		return nil, err
	}
	defer bootEnd.Close()
	a := boot.Args{
		ID: o.ID, Bundle: o.Bundle, Plan: o.Plan, PlanFD: -1, Hosted: true,
		ListenFDs: o.ListenFDs, Config: o.Config,
	}
	var logFD int
	if a.CreateSyncFD, err = dup(bootEnd); err == nil {
		a.ControllerFD, err = dup(ln)
	}
	if err == nil {
		a.ExeFD, err = dup(o.Exe.File)
	}
	if err == nil {
		a.StdioFDs, err = dupAll(dup, stdioFiles(o.Stdio))
	}
	if err == nil {
		a.ExtraFDs, err = dupAll(dup, o.Extra)
	}
	if err == nil {
		logFD, err = dup(o.LogFile)
	}
	if err != nil {
		cliEnd.Close()
		return nil, err
	}
	a.LogFile = os.NewFile(uintptr(logFD), "log")
	bootLog, err := mlog.New(a.LogFile, o.Config.LogFormat, o.Config.Debug, "boot")
	if err != nil {
		cliEnd.Close()
		return nil, err
	}
	h := &hostedBoot{done: make(chan struct{})}
	sb = &Sandbox{Pid: os.Getpid(), create: ipc.NewConn(cliEnd), hosted: h}
	procutil.Trace("cli", "hosting boot")
	owned = nil
	go func() {
		defer close(h.done)
		code, berr := boot.Main(a, bootLog)
		if berr != nil {
			// Boot has said why over the create socket, or logged it.
			log.Debug("hosted boot returned", "error", berr)
		}
		h.code = code
	}()
	if err := sb.awaitCreated(o, nil); err != nil {
		return nil, err
	}
	return sb, nil
}

// dupAll duplicates every file (nil ones as /dev/null, as stdioFiles does).
func dupAll(dup func(*os.File) (int, error), fs []*os.File) ([]int, error) {
	var out []int
	for _, f := range fs {
		fd, err := dup(f)
		if err != nil {
			return nil, err
		}
		out = append(out, fd)
	}
	return out, nil
}
