package boot

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// goferProc is `moat gofer` as boot sees it.
type goferProc struct {
	cmd    *exec.Cmd
	sync   *ipc.Conn  // --gofer-sync-fd, boot's end
	io     []*os.File // init's ends of the io sockets, one per served tree
	done   chan struct{}
	status string // how it ended, valid after done
	pidfd  int    // readable once the gofer has exited, reaped or not (-1: none)
}

// goferMountsTimeout bounds the gofer's start-up until its jail is ready.
const goferMountsTimeout = 60 * time.Second

// startGofer spawns the gofer in a mount namespace of its own, from the
// boot's own executable, before init, so that both start up together, and
// sends it its part of the plan (BootGoferConfig), as the CLI made it.
func (b *boot) startGofer(gc *ipc.BootGoferConfig) error {
	n := 1 + len(gc.Binds)
	var goferEnds []*os.File
	for i := 0; i < n; i++ {
		g, initEnd, err := ipc.SocketPair("gofer-io")
		if err != nil {
			closeFiles(goferEnds)
			return err
		}
		goferEnds = append(goferEnds, g)
		b.goferIO = append(b.goferIO, initEnd)
	}
	defer closeFiles(goferEnds)
	syncGofer, syncBoot, err := ipc.SocketPair("gofer-sync")
	if err != nil {
		return err
	}
	defer syncGofer.Close()
	conn := ipc.NewConn(syncBoot)
	var d procutil.Donations
	d.Donate("gofer-sync-fd", syncGofer)
	d.DonateMany("io-fds", goferEnds)
	// A crash of the gofer (a Go panic) lands in boot's log.
	stdio := [3]*os.File{nil, nil, b.args.LogFile}
	// The gofer runs boot's own executable, not the protected one: it never
	// enters the container, and the copy can go once the container runs.
	cmd := b.helperCmd(nil, stdio, nil, &d, "gofer")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS,
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL,
	}
	d.Log(b.log, "gofer")
	if err := spawnOnKeeperThread(cmd, nil, nil); err != nil {
		conn.Close()
		return fmt.Errorf("start gofer: %w", err)
	}
	procutil.Trace("boot", "gofer spawned")
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		pidfd = -1
	}
	g := &goferProc{cmd: cmd, sync: conn, io: b.goferIO, done: make(chan struct{}), pidfd: pidfd}
	b.gofer = g
	go g.wait()
	// On error, abort kills the gofer.
	conn.SetDeadline(time.Now().Add(goferMountsTimeout))
	if err := conn.Send(gc); err != nil {
		return fmt.Errorf("send the gofer its config: %w", err)
	}
	return nil
}

func (g *goferProc) wait() {
	err := g.cmd.Wait()
	switch ws, ok := g.cmd.ProcessState.Sys().(syscall.WaitStatus); {
	case ok && ws.Signaled():
		g.status = "killed by " + ws.Signal().String()
	case ok:
		g.status = "exit status " + strconv.Itoa(ws.ExitStatus())
	default:
		g.status = fmt.Sprint(err)
	}
	close(g.done)
}

// awaitMounts reads the gofer's resolved mount list.
func (g *goferProc) awaitMounts() ([]ipc.GoferMount, error) {
	g.sync.SetDeadline(time.Now().Add(goferMountsTimeout))
	var res ipc.GoferMountsResolved
	_, err := g.sync.WaitFor(&res)
	g.sync.Close()
	if err != nil {
		select {
		case <-g.done:
			return nil, fmt.Errorf("gofer exited (%s) while preparing: %w", g.status, err)
		case <-time.After(time.Second):
		}
		return nil, fmt.Errorf("gofer: %w", err)
	}
	return res.Mounts, nil
}

// stop ends the gofer once the container is gone: it exits by itself when
// its FUSE mounts vanish with the container's mount namespace; a gofer that
// does not is killed.
func (g *goferProc) stop(timeout time.Duration) {
	if g == nil {
		return
	}
	select {
	case <-g.done:
	case <-time.After(timeout):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	if g.pidfd >= 0 {
		unix.Close(g.pidfd)
		g.pidfd = -1
	}
}

// exitStatus reports how the gofer ended if it has exited, or does within
// d: through its pidfd, readable as soon as it has exited, before boot
// reaps it (the reap, which sets status, follows at once).
func (g *goferProc) exitStatus(d time.Duration) (string, bool) {
	select {
	case <-g.done:
		return g.status, true
	default:
	}
	if g.pidfd < 0 {
		return "", false
	}
	if exited, err := procutil.PollReadable(g.pidfd, d); err != nil || !exited {
		return "", false
	}
	select {
	case <-g.done:
		return g.status, true
	case <-time.After(time.Second):
		return "exited, not yet reaped", true
	}
}

// keepServedIO keeps init's ends of the io sockets of the trees the gofer
// serves (root first, then mounts in the order it reports them) and closes
// those of optional bind mounts it left out (their source was gone).
func (b *boot) keepServedIO(mounts []ipc.GoferMount) error {
	keep := make([]*os.File, 0, len(mounts))
	used := map[int]bool{}
	served := b.plan.Gofer.Served()
	for _, m := range mounts {
		k := ipc.IoIndex(served, m.SpecIndex)
		if k < 0 {
			return fmt.Errorf("the gofer serves mounts[%d], which it was not asked to", m.SpecIndex)
		}
		if used[k] {
			return fmt.Errorf("the gofer reported mounts[%d] twice", m.SpecIndex)
		}
		used[k] = true
		keep = append(keep, b.goferIO[k])
	}
	for k, f := range b.goferIO {
		if !used[k] {
			f.Close()
		}
	}
	b.goferIO = keep
	return nil
}

// startFileServers starts what serves the container's files: the image's
// shared gofer when it may have one (--shared-gofer), and a gofer of its
// own for the rest (everything without a shared root; the bind mounts with
// one).
func (b *boot) startFileServers(cfg *config.Config) error {
	if b.sharedEligible(cfg) {
		var err error
		if b.shared, err = b.attachShared(cfg); err != nil {
			b.log.Warn("no shared gofer; the container gets its own", "error", err)
		}
	}
	gc := *b.plan.Gofer
	if b.shared != nil {
		if len(gc.Binds) == 0 {
			return nil
		}
		gc.SharedRoot = true
	}
	return b.startGofer(&gc)
}

// awaitGoferPlan waits for the gofer's resolved mounts and builds init's
// part of the gofer setup (nil without a gofer).
func (b *boot) awaitGoferPlan() (*ipc.GoferPlan, error) {
	if b.gofer == nil && b.shared == nil {
		return nil, nil
	}
	var mounts []ipc.GoferMount
	if b.gofer != nil {
		procutil.Trace("boot", "cgroup ready, awaiting gofer")
		var err error
		if mounts, err = b.gofer.awaitMounts(); err != nil {
			return nil, err
		}
		procutil.Trace("boot", "gofer's mounts received")
		if err := b.keepServedIO(mounts); err != nil {
			return nil, err
		}
		if b.shared != nil && len(mounts) == 0 {
			// Its optional bind mounts were gone: it serves nothing and
			// ends, which is no reason to kill the container.
			b.gofer.stop(5 * time.Second)
			b.gofer = nil
		}
	}
	if b.shared != nil {
		mounts = append([]ipc.GoferMount{{SpecIndex: -1, Destination: "/", ReadOnly: true}}, mounts...)
	}
	plan := b.goferPlan(mounts)
	plan.SharedRoot = b.shared != nil
	return plan, nil
}

// goferPlan builds init's part of the gofer setup, from the plan.
func (b *boot) goferPlan(mounts []ipc.GoferMount) *ipc.GoferPlan {
	plan := &ipc.GoferPlan{Mounts: mounts, Planned: b.plan.Gofer.Served(), Overlay: b.plan.Gofer.Overlay,
		OverlaySize: b.plan.OverlaySize}
	if b.plan.Gofer.RootReadonly {
		plan.Overlay = config.OverlayNone
	}
	return plan
}

// ErrNoFuse marks a host where /dev/fuse cannot be used (its identity
// crosses to the CLI: see package ipc).
var ErrNoFuse = ipc.ErrNoFuse

// openFuse opens n /dev/fuse descriptors, one per tree the gofer serves.
func openFuse(n int) ([]*os.File, error) {
	var out []*os.File
	for i := 0; i < n; i++ {
		f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
		if err != nil {
			closeFiles(out)
			return nil, fmt.Errorf("%w (%v): the gofer needs it (chmod 0666 /dev/fuse for rootless use), or use --file-access=direct to run without", ErrNoFuse, err)
		}
		out = append(out, f)
	}
	return out, nil
}
