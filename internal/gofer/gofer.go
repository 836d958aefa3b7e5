// Package gofer runs inside `moat gofer`, the only process that opens host
// files for a container. It builds a jail holding just the trees it serves
// (the root filesystem and each bind mount's source), pivots into it, drops
// to the file-server capabilities, installs a seccomp allowlist, and then
// serves each tree over its own FUSE connection, whose /dev/fuse descriptor
// the container init mounted and handed over.
//
//	boot                      gofer                              init
//	 |-- spawn (new mnt ns) ---->|                                     |
//	 |-- BootGoferConfig ------->| (--gofer-sync-fd: its part of the plan)
//	 |                           | resolve destinations in the rootfs  |
//	 |                           | bind trees into the jail, pivot     |
//	 |<- GoferMountsResolved ----| (--gofer-sync-fd)                   |
//	 |                           | caps, no_new_privs, seccomp         |
//	 |-- BootInitConfig + io sockets ------------------------------->  |
//	 |                           |<- /dev/fuse fd per mount (io-fds) --| mounts FUSE
//	 |                           | serves until unmounted              |
//
// If init goes away before handing over a descriptor, the gofer exits. If
// the gofer dies, the kernel aborts its FUSE connections: the container gets
// I/O errors, never a hang, and boot tears the container down.
package gofer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/gofer/fsys"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// Args are `moat gofer`'s flags.
type Args struct {
	// SyncFD is the socket to boot: BootGoferConfig (the gofer's part of
	// the plan) comes on it, GoferMountsResolved goes back.
	SyncFD int
	IoFDs  []int // one socket per served tree: root first, then bind mounts in spec order
}

// configTimeout bounds the wait for boot's BootGoferConfig.
const configTimeout = 30 * time.Second

// fdTimeout bounds the wait for init's FUSE descriptors.
const fdTimeout = 2 * time.Minute

// Main builds the jail, reports the resolved mounts, confines the gofer and
// serves until every FUSE connection has ended.
func Main(a Args, log *slog.Logger) error {
	procutil.Trace("gofer", "main")
	// No process of the container may ptrace the gofer or open its /proc
	// files: its descriptors are the host's files (containers without a
	// pid namespace of their own can see it).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	startup := procutil.FindStartupPages() // while /proc is there
	mounts := ipc.NewConn(os.NewFile(uintptr(a.SyncFD), "gofer-sync"))
	trees, dirs, ioFDs, err := setUp(a, mounts)
	if err != nil {
		// Errors cross to boot as data, not as a lost log line.
		mounts.SetDeadline(time.Now().Add(5 * time.Second))
		_ = mounts.Send(ipc.FailedFrom("gofer", err))
		mounts.Close()
		return err
	}
	return serveAll(trees, dirs, ioFDs, startup, log)
}

// setUp reads the gofer's config, builds the jail, confines the gofer and
// reports the resolved mounts.
func setUp(a Args, mounts *ipc.Conn) ([]*tree, []*os.File, []int, error) {
	mounts.SetDeadline(time.Now().Add(configTimeout))
	var c ipc.BootGoferConfig
	if _, err := mounts.WaitFor(&c); err != nil {
		return nil, nil, nil, err
	}
	trees, err := planTrees(&c)
	if err != nil {
		return nil, nil, nil, err
	}
	if c.SharedRoot {
		trees = trees[1:] // the image's shared gofer serves the root
	}
	procutil.Trace("gofer", "planned")
	// FUSE passthrough needs CAP_SYS_ADMIN in the initial user namespace:
	// kept only if a tree can use it.
	passthrough := false
	if procutil.InitialUserNS() {
		for _, t := range trees {
			t.passthrough = t.options().UsesPassthrough()
			passthrough = passthrough || t.passthrough
		}
	}
	if err := fsys.PrepareChroot(); err != nil {
		return nil, nil, nil, err
	}
	procutil.Trace("gofer", "prepared chroot")
	trees, dirs, err := buildJail(c.Rootfs, trees)
	if err != nil {
		return nil, nil, nil, err
	}
	ioFDs, err := treeIoFDs(trees, c.Served(), a.IoFDs)
	if err != nil {
		closeAll(dirs)
		return nil, nil, nil, err
	}
	// Reported before confinement, which allows no sending; a confinement
	// that fails ends the gofer, and boot fails the create for it.
	if err := reportMounts(mounts, trees); err != nil {
		closeAll(dirs)
		return nil, nil, nil, err
	}
	mounts.Close()
	keep := fileServerCaps
	if allReadOnly(trees) {
		keep = readOnlyServerCaps
	}
	if passthrough {
		keep = append(slices.Clip(keep), unix.CAP_SYS_ADMIN)
	}
	if err := confine(keep); err != nil {
		closeAll(dirs)
		return nil, nil, nil, err
	}
	return trees, dirs, ioFDs, nil
}

// treeIoFDs pairs each tree with its io socket: ioFDs holds the root's,
// then one per index of served (in that order). The sockets of optional
// bind mounts whose source was gone are closed: boot gives init the same
// pairing from the mounts the gofer reports.
func treeIoFDs(trees []*tree, served, ioFDs []int) ([]int, error) {
	if len(ioFDs) != 1+len(served) {
		return nil, fmt.Errorf("%d io descriptors for %d trees to serve", len(ioFDs), 1+len(served))
	}
	used := map[int]bool{}
	var out []int
	for _, t := range trees {
		k := ipc.IoIndex(served, t.mount.SpecIndex)
		if k < 0 {
			return nil, fmt.Errorf("tree for mounts[%d], which the plan did not ask to serve", t.mount.SpecIndex)
		}
		used[k] = true
		out = append(out, ioFDs[k])
	}
	for k, fd := range ioFDs {
		if !used[k] {
			unix.Close(fd)
		}
	}
	return out, nil
}

func reportMounts(conn *ipc.Conn, trees []*tree) error {
	msg := ipc.GoferMountsResolved{}
	for _, t := range trees {
		msg.Mounts = append(msg.Mounts, t.mount)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn.Send(msg)
}

// serveAll waits for each tree's FUSE descriptor and serves it; it returns
// when every connection has ended, or at once if init went away first. A
// while after every tree is served, the pages start-up touched are let go.
func serveAll(trees []*tree, dirs []*os.File, ioFDs []int, startup procutil.StartupPages, log *slog.Logger) error {
	var wg, received sync.WaitGroup
	received.Add(len(trees))
	go func() { received.Wait(); startup.DropAfter(procutil.IdleAfter) }()
	errs := make(chan error, len(trees))
	for i, t := range trees {
		conn, err := ipc.FromFD(ioFDs[i], "gofer-io")
		if err != nil {
			return err
		}
		wg.Add(1)
		go func(t *tree, dir *os.File, conn *ipc.Conn) {
			defer wg.Done()
			errs <- serveOne(t, dir, conn, received.Done, log)
		}(t, dirs[i], conn)
	}
	go func() { wg.Wait(); close(errs) }()
	for err := range errs {
		if err != nil {
			// A tree that never got its descriptor: init is gone; the
			// others can only be served to nobody.
			return err
		}
	}
	return nil
}

// serveOne receives the FUSE descriptor for one tree and serves it.
// received is called once the wait for the descriptor is over.
func serveOne(t *tree, dir *os.File, conn *ipc.Conn, received func(), log *slog.Logger) error {
	conn.SetDeadline(time.Now().Add(fdTimeout))
	var ready ipc.InitFuseMounted
	files, err := conn.WaitFor(&ready)
	received()
	procutil.Trace("gofer", "fuse fd received")
	conn.Close()
	if err != nil {
		return fmt.Errorf("%s: waiting for its FUSE descriptor: %w", t.mount.Destination, err)
	}
	if len(files) != 1 {
		return errors.New("protocol error: InitFuseMounted without one descriptor")
	}
	fuseFD := files[0]
	defer fuseFD.Close()
	opts := t.options()
	opts.Passthrough = t.passthrough
	if log.Enabled(context.Background(), slog.LevelDebug) {
		opts.Logf = func(format string, args ...any) {
			log.Debug(fmt.Sprintf(format, args...), "tree", t.mount.Destination)
		}
	}
	log.Debug("serving", "tree", t.mount.Destination, "readonly", t.mount.ReadOnly)
	return fsys.Serve(dir, int(fuseFD.Fd()), opts)
}

// allReadOnly reports whether every tree served is read-only: the server
// then creates, chowns and chmods nothing (readOnlyServerCaps).
func allReadOnly(trees []*tree) bool {
	for _, t := range trees {
		if !t.mount.ReadOnly {
			return false
		}
	}
	return true
}
