package gofer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/gofer/fsys"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// SharedArgs are `moat gofer --shared`'s flags: one image's read-only
// root, served to every container of that image that boot attaches
// (--shared-gofer), for as long as one uses it and Idle after.
type SharedArgs struct {
	Rootfs string // absolute
	// RootfsID is the image boot keyed the gofer by ("dev:ino" of Rootfs
	// when boot looked): the gofer serves that directory or nothing.
	RootfsID string
	FuseFD   int // /dev/fuse, whose superblock boot made
	MountFD  int // a detached mount of that superblock, handed to each boot
	ListenFD int // listening unix socket: one connection per container
	Idle     time.Duration
	// MaxClients bounds the containers attached at once.
	MaxClients int
}

// sharedSyscalls are what the shared gofer adds to the allowlist: taking
// a boot's connection and handing it the mount (no socket, connect or
// mount call: it reaches no one new and mounts nothing).
var sharedSyscalls = []string{"accept4", "sendmsg"}

// SharedMain builds the jail for the root, confines itself exactly as a
// container's gofer, and serves until it has been idle for a.Idle.
func SharedMain(a SharedArgs, log *slog.Logger) error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	startup := procutil.FindStartupPages()
	root := &tree{
		mount:  ipc.GoferMount{SpecIndex: -1, Destination: "/", ReadOnly: true},
		source: a.Rootfs, cache: fsys.CacheLong, jailName: "root", underlay: true,
	}
	if err := fsys.PrepareChroot(); err != nil {
		return err
	}
	_, dirs, err := buildJail(a.Rootfs, []*tree{root})
	if err != nil {
		return err
	}
	if err := isKeyed(dirs[0], a.RootfsID); err != nil {
		closeAll(dirs)
		return fmt.Errorf("shared root %s: %w", a.Rootfs, err)
	}
	if err := unix.SetNonblock(a.ListenFD, true); err != nil {
		return fmt.Errorf("--listen-fd: %w", err)
	}
	if err := confine(readOnlyServerCaps, sharedSyscalls...); err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() {
		opts := root.options()
		opts.Passthrough = false
		if log.Enabled(context.Background(), slog.LevelDebug) {
			opts.Logf = func(format string, args ...any) { log.Debug(fmt.Sprintf(format, args...), "tree", "shared /") }
		}
		served <- fsys.Serve(dirs[0], a.FuseFD, opts)
	}()
	go startup.DropAfter(procutil.IdleAfter)
	return acceptLoop(a, served, log)
}

// acceptLoop hands the mount to each boot that connects and counts the
// connections still open; idle for a.Idle with none, it stops listening
// and returns. A boot whose connection closes has ended its container.
func acceptLoop(a SharedArgs, served <-chan error, log *slog.Logger) error {
	fds := []unix.PollFd{{Fd: int32(a.ListenFD), Events: unix.POLLIN}}
	idleSince := time.Now()
	for {
		select {
		case err := <-served:
			return fmt.Errorf("shared root: FUSE connection ended: %w", err)
		default:
		}
		if len(fds) == 1 && time.Since(idleSince) >= a.Idle {
			unix.Close(a.ListenFD)
			log.Debug("shared gofer idle; exiting")
			return nil
		}
		if _, err := unix.Poll(fds, 1000); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		kept := fds[:1]
		for _, p := range fds[1:] {
			if p.Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0 {
				// Boots send nothing: any readiness is the end.
				unix.Close(int(p.Fd))
				continue
			}
			kept = append(kept, unix.PollFd{Fd: p.Fd, Events: unix.POLLIN})
		}
		fds = kept
		if fds[0].Revents&unix.POLLIN != 0 {
			fds = accept(a, fds, log)
		}
		fds[0].Revents = 0
		if len(fds) == 1 {
			if idleSince.IsZero() {
				idleSince = time.Now()
			}
		} else {
			idleSince = time.Time{}
		}
	}
}

// accept takes every pending connection, up to MaxClients attached.
func accept(a SharedArgs, fds []unix.PollFd, log *slog.Logger) []unix.PollFd {
	for {
		c, _, err := unix.Accept4(a.ListenFD, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			return fds
		}
		if len(fds)-1 >= a.MaxClients {
			// Closed unanswered: the boot starts another shared gofer
			// on this socket's path, for the next containers.
			unix.Close(c)
			continue
		}
		if err := unix.Sendmsg(c, []byte{1}, unix.UnixRights(a.MountFD), nil, 0); err != nil {
			log.Debug("hand the mount over", "error", err)
			unix.Close(c)
			continue
		}
		fds = append(fds, unix.PollFd{Fd: int32(c), Events: unix.POLLIN})
	}
}

// isKeyed checks that dir, the root the gofer opened, is the directory
// boot keyed it by (id: "dev:ino"): a path swapped between boot's look and
// the gofer's open would otherwise serve another tree to every container
// of that key.
func isKeyed(dir *os.File, id string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		return fmt.Errorf("stat the opened root: %w", err)
	}
	if got := fmt.Sprintf("%d:%d", st.Dev, st.Ino); got != id {
		return fmt.Errorf("the directory opened (%s) is not the one keyed (%s): it changed in between", got, id)
	}
	return nil
}
