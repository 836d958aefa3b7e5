package boot

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
)

// awaitExec waits until a helper (init or exec) has executed its process:
// EOF on its socket, which closes on execve. A seccomp notify listener may
// come first; it is handed to the spec's listener socket. Any other message
// is a failure.
func (b *boot) awaitExec(conn *ipc.Conn, pid int, status specs.ContainerState) error {
	for {
		raw, err := conn.Recv()
		if err == ipc.ErrPeerClosed {
			return nil
		}
		if err != nil {
			return err
		}
		if ferr := raw.AsError(); ferr != nil {
			raw.CloseFiles()
			return ferr
		}
		if raw.Type != (ipc.InitSeccompListener{}).Kind() || len(raw.Files) != 1 {
			raw.CloseFiles()
			return fmt.Errorf("protocol error: unexpected %s", raw.Type)
		}
		err = b.sendListener(raw.Files[0], pid, status)
		raw.CloseFiles()
		if err != nil {
			return err
		}
	}
}

// sendListener gives a seccomp notify fd to the agent at listenerPath, with
// the container process state (runtime-spec: "seccomp", listenerPath).
func (b *boot) sendListener(fd *os.File, pid int, status specs.ContainerState) error {
	sc := b.plan.Spec.Linux.Seccomp
	if sc == nil || sc.ListenerPath == "" {
		return fmt.Errorf("seccomp notify used without linux.seccomp.listenerPath")
	}
	st := specs.ContainerProcessState{
		Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: pid,
		Metadata: sc.ListenerMetadata,
		State:    *hooks.State(b.args.ID, b.args.Bundle, b.init.pid, status, b.plan.Spec),
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	c, err := net.DialTimeout("unix", sc.ListenerPath, 5*time.Second)
	if err != nil {
		return fmt.Errorf("seccomp listener %s: %w", sc.ListenerPath, err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := uc.WriteMsgUnix(data, unix.UnixRights(int(fd.Fd())), nil); err != nil {
		return fmt.Errorf("seccomp listener %s: %w", sc.ListenerPath, err)
	}
	return nil
}
