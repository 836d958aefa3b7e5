package initproc

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// runExec joins a running container and executes a process in it.
func runExec(conn *ipc.Conn, log *slog.Logger) error {
	conn.SetDeadline(time.Now().Add(configTimeout))
	var cfg ipc.BootExecConfig
	files, err := conn.WaitFor(&cfg)
	if err != nil {
		return err
	}
	if err := joinNamespaces(cfg.Namespaces, files); err != nil {
		return err
	}
	if err := conn.Send(ipc.InitExecJoined{}); err != nil {
		return err
	}
	var rel ipc.BootExecReleased
	if _, err := conn.WaitFor(&rel); err != nil {
		return err
	}
	conn.SetDeadline(time.Time{})
	l, err := prepareLaunch(cfg.Process, cfg.Seccomp, cfg.Personality, cfg.PreserveFDs)
	if err != nil {
		return err
	}
	l.toBoot = conn
	if cfg.Process.Terminal {
		tty, err := execPty(cfg.Process)
		if err != nil {
			return err
		}
		if err := conn.Send(ipc.InitPtyCreated{}, int(tty.master.Fd())); err != nil {
			tty.close()
			return fmt.Errorf("send pty: %w", err)
		}
		tty.master.Close()
		l.tty = tty.slave
	}
	log.Debug("exec", "program", l.path)
	return l.execute()
}
