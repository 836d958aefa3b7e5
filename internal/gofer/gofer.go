// Package gofer runs inside `moat gofer`, the only process that opens host
// files for a container. It builds a jail holding just the trees it serves
// (the root filesystem and each bind mount's source), pivots into it, drops
// to the file-server capabilities, installs a seccomp allowlist, and then
// serves each tree over its own FUSE connection, whose /dev/fuse descriptor
// the container init mounted and handed over.
//
//	boot                      gofer                              init
//	 |-- spawn (new mnt ns) ---->| resolve destinations in the rootfs  |
//	 |                           | bind trees into the jail, pivot     |
//	 |<- GoferMountsResolved ----| (--mounts-fd)                       |
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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/gofer/fsys"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/spec"
)

// Args are `moat gofer`'s flags.
type Args struct {
	Bundle   string
	SpecFD   int   // the validated config.json
	MountsFD int   // where the resolved mount list goes (GoferMountsResolved)
	IoFDs    []int // one socket per served tree: root first, then bind mounts in spec order
	ExeFD    int   // the sealed copy of moat, for the re-exec into the confined phase
	LogFD    int
	Overlay  string
	// Serve is the confined second phase: the trees are already open at
	// TreeFDs, described by Trees.
	Serve   bool
	TreeFDs []int
	Trees   string // JSON []servedTree
	// GlobalFlags are moat's global flags, for the re-exec.
	GlobalFlags []string
}

// fdTimeout bounds the wait for init's FUSE descriptors.
const fdTimeout = 2 * time.Minute

// Main runs the gofer: the set-up phase (jail, mount list), which ends by
// re-executing into the confined serving phase.
func Main(a Args, log *slog.Logger) error {
	if a.Serve {
		return serve(a, log)
	}
	mounts := ipc.NewConn(os.NewFile(uintptr(a.MountsFD), "mounts"))
	err := setUp(a, mounts)
	// setUp returns only on failure: success re-executes.
	// Errors cross to boot as data, not as a lost log line.
	mounts.SetDeadline(time.Now().Add(5 * time.Second))
	_ = mounts.Send(ipc.FailedFrom("gofer", err))
	mounts.Close()
	return err
}

// setUp builds the jail, reports the resolved mounts and re-executes into
// the serving phase with the file-server capabilities only.
func setUp(a Args, mounts *ipc.Conn) error {
	// Nothing inherited reaches the serving phase unless kept on purpose.
	// (The executable itself cannot be close-on-exec: execveat of such a
	// descriptor fails; the serving phase closes it first thing.)
	for _, fd := range append([]int{a.MountsFD, a.LogFD}, a.IoFDs...) {
		if fd >= 0 {
			unix.CloseOnExec(fd)
		}
	}
	s, err := readSpec(a.SpecFD)
	if err != nil {
		return err
	}
	trees, err := planTrees(s, a.Bundle, a.Overlay)
	if err != nil {
		return err
	}
	if len(trees) != len(a.IoFDs) {
		return fmt.Errorf("%d io descriptors for %d served trees", len(a.IoFDs), len(trees))
	}
	passthrough := passthroughWanted()
	dirs, err := buildJail(trees)
	if err != nil {
		return err
	}
	if err := reportMounts(mounts, trees); err != nil {
		return err
	}
	return reexecConfined(a, trees, dirs, passthrough)
}

// serve is the confined phase: seccomp, then serve every tree.
func serve(a Args, log *slog.Logger) error {
	if a.ExeFD >= 0 {
		unix.Close(a.ExeFD)
	}
	var served []servedTree
	if err := json.Unmarshal([]byte(a.Trees), &served); err != nil {
		return fmt.Errorf("--trees: %w", err)
	}
	if len(served) != len(a.TreeFDs) || len(served) != len(a.IoFDs) {
		return fmt.Errorf("%d trees, %d tree descriptors, %d io descriptors", len(served), len(a.TreeFDs), len(a.IoFDs))
	}
	// (fsys.PrepareChroot is not needed: the server does not splice, and
	// this phase starts in the jail, where there is no /dev/null to open.)
	if err := checkConfined(); err != nil {
		return err
	}
	if err := installFilter(); err != nil {
		return err
	}
	var dirs []*os.File
	for _, fd := range a.TreeFDs {
		dirs = append(dirs, os.NewFile(uintptr(fd), "tree"))
	}
	return serveAll(served, dirs, a.IoFDs, log)
}

func readSpec(fd int) (*specs.Spec, error) {
	f := os.NewFile(uintptr(fd), "spec")
	defer f.Close()
	return spec.Decode(f)
}

func reportMounts(conn *ipc.Conn, trees []*tree) error {
	msg := ipc.GoferMountsResolved{}
	for _, t := range trees {
		msg.Mounts = append(msg.Mounts, t.mount)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn.Send(msg)
}

// passthroughWanted: FUSE passthrough needs CAP_SYS_ADMIN in the initial
// user namespace, so only real root can have it.
func passthroughWanted() bool {
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return string(data) == "         0          0 4294967295\n"
}

// serveAll waits for each tree's FUSE descriptor and serves it; it returns
// when every connection has ended, or at once if init went away first.
func serveAll(trees []servedTree, dirs []*os.File, ioFDs []int, log *slog.Logger) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(trees))
	for i, t := range trees {
		conn, err := ipc.FromFD(ioFDs[i], "gofer-io")
		if err != nil {
			return err
		}
		wg.Add(1)
		go func(t servedTree, dir *os.File, conn *ipc.Conn) {
			defer wg.Done()
			errs <- serveOne(t, dir, conn, log)
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
func serveOne(t servedTree, dir *os.File, conn *ipc.Conn, log *slog.Logger) error {
	conn.SetDeadline(time.Now().Add(fdTimeout))
	var ready ipc.InitFuseMounted
	files, err := conn.WaitFor(&ready)
	conn.Close()
	if err != nil {
		return fmt.Errorf("%s: waiting for its FUSE descriptor: %w", t.Destination, err)
	}
	if len(files) != 1 {
		return errors.New("protocol error: InitFuseMounted without one descriptor")
	}
	fuseFD := files[0]
	defer fuseFD.Close()
	opts := fsys.Options{ReadOnly: t.ReadOnly, Cache: t.Cache, Passthrough: t.Passthrough}
	if log.Enabled(context.Background(), slog.LevelDebug) {
		opts.Logf = func(format string, args ...any) {
			log.Debug(fmt.Sprintf(format, args...), "tree", t.Destination)
		}
	}
	log.Debug("serving", "tree", t.Destination, "readonly", t.ReadOnly)
	return fsys.Serve(dir, int(fuseFD.Fd()), opts)
}
