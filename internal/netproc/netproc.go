// Package netproc runs inside `moat net`, the sandbox network's process
// (--network=sandbox): gVisor's netstack on the container's TAP, NAT of its
// TCP, UDP and ICMP echo to host sockets, the DNS forwarder, the egress
// policy and the port forwards (all in package network). Every packet the
// container sends is parsed here, so the process holds nothing a flaw could
// use: before it reads anything from boot it pivots into an empty root,
// drops every capability, sets no_new_privs and installs a seccomp
// allowlist. Boot hands it the TAP and the published ports' sockets, which
// need privileges to make (see package netmsg for the protocol).
//
// If it dies, the container loses its network and nothing else: boot logs
// why and keeps supervising.
package netproc

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/ipc/netmsg"
	"github.com/moat-sandbox/moat/internal/network"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// Args are `moat net`'s flags.
type Args struct {
	SyncFD int // --net-sync-fd: the socket to boot
}

// configTimeout bounds the wait for boot's BootNetConfig.
const configTimeout = 60 * time.Second

// Main confines the process, starts the network boot describes and serves
// boot's port requests until boot closes its end.
func Main(a Args, log *slog.Logger) error {
	procutil.Trace("net", "main")
	// No process of the container may ptrace it or open its /proc files.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	conn, err := ipc.FromFD(a.SyncFD, "net-sync")
	if err != nil {
		return err
	}
	defer conn.Close()
	sb, err := start(conn, log)
	if err != nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_ = conn.Send(ipc.FailedFrom("net", err))
		return err
	}
	procutil.Trace("net", "started")
	serveErr := serve(conn, sb)
	if err := sb.Close(); err != nil {
		log.Warn("close the sandbox network", "error", err)
	}
	return serveErr
}

// start confines the process, then receives its settings and descriptors
// and starts the network.
func start(conn *ipc.Conn, log *slog.Logger) (*network.Sandbox, error) {
	// The local time zone is read on first use (log lines): now, while
	// /etc/localtime is there.
	time.Now().Zone()
	startup := procutil.FindStartupPages() // needs /proc: before the root is emptied
	if err := confine(); err != nil {
		return nil, fmt.Errorf("confine: %w", err)
	}
	procutil.Trace("net", "confined")
	conn.SetDeadline(time.Now().Add(configTimeout))
	var cfg netmsg.BootNetConfig
	files, err := conn.WaitFor(&cfg)
	if err != nil {
		return nil, err
	}
	fwds := cfg.Settings.Forwards
	if len(files) != 1+len(fwds) {
		closeFiles(files)
		return nil, fmt.Errorf("protocol error: BootNetConfig carried %d descriptors for %d forwards", len(files), len(fwds))
	}
	network.LimitSupervisorMemory()
	c := cfg.Settings.Config
	c.Log = func(format string, args ...any) {
		log.Warn("sandbox network: " + fmt.Sprintf(format, args...))
	}
	sb, err := network.Start(files[0], c)
	if err != nil {
		closeFiles(files[1:])
		return nil, err
	}
	for i, f := range fwds {
		if err := sb.AddForwardListener(f, files[1+i]); err != nil {
			closeFiles(files[2+i:])
			sb.Close()
			return nil, fmt.Errorf("publish %s: %w", f, err)
		}
	}
	conn.SetDeadline(time.Time{})
	if err := conn.Send(netmsg.NetStarted{Forwards: sb.Forwards()}); err != nil {
		sb.Close()
		return nil, err
	}
	startup.DropAfter(procutil.IdleAfter) // an idle network needs little of them
	return sb, nil
}

// serve answers boot's port requests until boot closes its end (nil) or
// the connection fails.
func serve(conn *ipc.Conn, sb *network.Sandbox) error {
	for {
		raw, err := conn.Recv()
		if errors.Is(err, ipc.ErrPeerClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("boot's requests: %w", err)
		}
		var req netmsg.BootNetPortRequested
		if err := raw.Decode(&req); err != nil {
			raw.CloseFiles()
			return fmt.Errorf("protocol error: %w", err)
		}
		var reply ipc.Message
		if err := ports(sb, req, raw.Files); err != nil {
			reply = ipc.FailedFrom("net", err)
		} else {
			reply = netmsg.NetPorts{Forwards: sb.Forwards()}
		}
		if err := conn.Send(reply); err != nil {
			return err
		}
	}
}

// ports carries out one port request; it owns files.
func ports(sb *network.Sandbox, req netmsg.BootNetPortRequested, files []*os.File) error {
	if req.Op == ipc.PortAdd {
		if len(files) != 1 {
			closeFiles(files)
			return fmt.Errorf("protocol error: %s came with %d descriptors", req.Op, len(files))
		}
		return sb.AddForwardListener(req.Forward, files[0])
	}
	closeFiles(files)
	switch req.Op {
	case ipc.PortList:
		return nil
	case ipc.PortRemove:
		return sb.RemoveForward(req.Forward)
	}
	return fmt.Errorf("unknown port operation %q", req.Op)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
