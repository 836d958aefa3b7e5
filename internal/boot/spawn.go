package boot

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/cgroup"
	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/spec"
)

// initProc is the container init as boot sees it.
type initProc struct {
	cmd   *exec.Cmd
	pid   int
	start uint64
	pidfd int           // pins the process for setns and signals
	conn  *ipc.Conn     // boot's end of --init-sync-fd
	done  chan struct{} // closed when init has been reaped
	code  int           // exit code, valid after done
	// ns holds init's namespaces, opened once created, for exec.
	ns map[specs.LinuxNamespaceType]*os.File
	// ownTimeNS: init's time namespace is not boot's.
	ownTimeNS bool
}

func (p *initProc) signal(sig unix.Signal) error {
	return unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
}

func (p *initProc) kill() { _ = p.signal(unix.SIGKILL) }

// exitedWithin waits for init's end up to d and reports whether it ended.
func (p *initProc) exitedWithin(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// cloneFlags are the namespaces init is born into. Not among them: the
// cgroup namespace (init unshares it after boot moved it into its cgroup),
// the time namespace (init unshares it and sets its offsets, which only work
// before any process is inside), and the user namespace (boot's own).
func cloneFlags(s *specs.Spec) uintptr {
	var f uintptr
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			continue
		}
		switch ns.Type {
		case specs.PIDNamespace:
			f |= unix.CLONE_NEWPID
		case specs.NetworkNamespace:
			f |= unix.CLONE_NEWNET
		case specs.MountNamespace:
			f |= unix.CLONE_NEWNS
		case specs.IPCNamespace:
			f |= unix.CLONE_NEWIPC
		case specs.UTSNamespace:
			f |= unix.CLONE_NEWUTS
		}
	}
	return f
}

// joinedNamespaces opens the namespaces the spec joins by path. Pid and time
// namespaces apply to children only, so boot joins those on the spawning
// thread; init joins the rest itself.
func joinedNamespaces(s *specs.Spec) (forkNS, initNS []*os.File, initTypes []specs.LinuxNamespaceType, err error) {
	closeAll := func() {
		for _, f := range append(forkNS, initNS...) {
			f.Close()
		}
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		f, oerr := os.Open(ns.Path)
		if oerr != nil {
			closeAll()
			return nil, nil, nil, fmt.Errorf("namespace %s: %w", ns.Type, oerr)
		}
		switch ns.Type {
		case specs.TimeNamespace:
			f.Close()
			closeAll()
			// setns(2) into a time namespace needs a single-threaded caller.
			return nil, nil, nil, fmt.Errorf("joining a time namespace by path is not supported")
		case specs.PIDNamespace:
			forkNS = append(forkNS, f)
		default:
			initNS = append(initNS, f)
			initTypes = append(initTypes, ns.Type)
		}
	}
	return forkNS, initNS, initTypes, nil
}

// helperCmd builds the command line of a helper. exe is the protected copy
// of moat that a helper entering the container (init, exec) runs from; nil
// runs boot's own executable, for the gofer, which never enters the
// container. extra are the descriptors the container process will see at
// 3.. (they must be the first ExtraFiles); the donations follow them.
func (b *boot) helperCmd(exe *os.File, stdio [3]*os.File, extra []*os.File, d *procutil.Donations, helperArgs ...string) *exec.Cmd {
	cmd := &exec.Cmd{
		Args:       append([]string{"moat"}, b.args.Config.ToFlags()...),
		Env:        procutil.TraceEnv(),
		Stdin:      stdio[0],
		Stdout:     stdio[1],
		Stderr:     stdio[2],
		ExtraFiles: append([]*os.File{}, extra...),
	}
	cmd.Args = append(cmd.Args, helperArgs...)
	if exe != nil {
		d.Donate("exe-fd", exe)
	}
	if b.args.LogFile != nil {
		d.Donate("log-fd", b.args.LogFile)
	}
	fds := d.Transfer(cmd)
	cmd.Path = "/proc/self/exe"
	if exe != nil {
		// The helper executes the protected copy through its own fd table:
		// the host's moat binary is never executed inside the container.
		cmd.Path = "/proc/self/fd/" + strconv.Itoa(fds["exe-fd"][0])
	}
	return cmd
}

// startInit spawns the container init, which then starts up while boot
// prepares the cgroup. It returns the namespaces init must join (for
// configureInit), which the caller closes.
func (b *boot) startInit() ([]*os.File, []specs.LinuxNamespaceType, error) {
	forkNS, initNS, initTypes, err := joinedNamespaces(b.plan.Spec)
	if err != nil {
		return nil, nil, err
	}
	defer closeFiles(forkNS)
	initEnd, bootEnd, err := ipc.SocketPair("init-sync")
	if err != nil {
		closeFiles(initNS)
		return nil, nil, err
	}
	stdio, extra := b.containerFiles()
	var d procutil.Donations
	d.Donate("init-sync-fd", initEnd)
	cmd := b.helperCmd(b.exe, stdio, extra, &d, "init")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: cloneFlags(b.plan.Spec),
		Setsid:     true,
		Pdeathsig:  syscall.SIGKILL, // boot dies => the container dies
	}
	if len(forkNS) > 0 {
		// In a joined pid namespace the child cannot see its parent, and
		// Go's fork code takes getppid() == 0 for a dead parent and kills
		// the child. Init sets the death signal itself instead.
		cmd.SysProcAttr.Pdeathsig = 0
	}
	d.Log(b.log, "init")
	bornIn(cmd, b.birth)
	startErr := spawnOnKeeperThread(cmd, forkNS, b.birth)

	procutil.Trace("boot", "init spawned")
	initEnd.Close()
	closeFiles(extra)
	closeFiles(stdio[:])
	if startErr != nil {
		bootEnd.Close()
		closeFiles(initNS)
		return nil, nil, fmt.Errorf("start container init: %w", startErr)
	}
	if err := b.trackInit(cmd, bootEnd); err != nil {
		closeFiles(initNS)
		return nil, nil, err
	}
	return initNS, initTypes, nil
}

// containerFiles opens the container's stdio and extra descriptors from the
// donated fds.
func (b *boot) containerFiles() ([3]*os.File, []*os.File) {
	var stdio [3]*os.File
	for i := range stdio {
		if i < len(b.args.StdioFDs) && b.args.StdioFDs[i] >= 0 {
			stdio[i] = os.NewFile(uintptr(b.args.StdioFDs[i]), "stdio")
		}
	}
	var extra []*os.File
	for _, fd := range b.args.ExtraFDs {
		extra = append(extra, os.NewFile(uintptr(fd), "preserved"))
	}
	return stdio, extra
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// spawnOnKeeperThread starts cmd from a dedicated OS thread that then stays
// parked for boot's whole life. The kernel sends PDEATHSIG when the *thread*
// that forked a child exits (golang/go#27505), so init must be forked by a
// thread that never exits; that thread is also where boot joins pid and time
// namespaces given by path, which only affect children. With birth, the
// thread enters the container's v1 cgroups for the fork and leaves them
// after (cgroup.Birthplace).
func spawnOnKeeperThread(cmd *exec.Cmd, forkNS []*os.File, birth *cgroup.Birthplace) error {
	res := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread is the keeper
		for _, f := range forkNS {
			if err := unix.Setns(int(f.Fd()), 0); err != nil {
				res <- fmt.Errorf("join namespace %s: %w", f.Name(), err)
				select {}
			}
		}
		leave, err := birth.Enter()
		if err != nil {
			res <- fmt.Errorf("cgroup: %w", err)
			select {}
		}
		procutil.Trace("boot", "keeper in the cgroup")
		err = cmd.Start()
		procutil.Trace("boot", "forked")
		if lerr := leave(); lerr != nil && err == nil {
			// The keeper would stay a container task: the container could
			// not be signalled as a whole nor its cgroup removed.
			cmd.Process.Kill()
			cmd.Wait()
			err = fmt.Errorf("cgroup: leave after the fork: %w", lerr)
		}
		res <- err
		select {}
	}()
	return <-res
}

// bornIn makes cmd start in birth's cgroup v2 directory, if any
// (CLONE_INTO_CGROUP); its v1 cgroups come from the forking thread's.
func bornIn(cmd *exec.Cmd, birth *cgroup.Birthplace) {
	if fd := birth.FD(); fd >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
}

// trackInit records init's identity and watches for its exit without
// reaping it: init stays a zombie until boot has torn the container down
// and exited, and then passes to the subreaper above boot (containerd's
// shim, conmon), which reaps it as it would reap runc's init and sees its
// real status. The pid in --pid-file is init's, as with runc.
func (b *boot) trackInit(cmd *exec.Cmd, conn *os.File) error {
	p := &initProc{cmd: cmd, pid: cmd.Process.Pid, conn: ipc.NewConn(conn), done: make(chan struct{})}
	b.init = p
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		close(p.done)
		return fmt.Errorf("pidfd_open init: %w", err)
	}
	p.pidfd = pidfd
	// Zero (init already gone) makes the CLI take init for stopped: a
	// pid without its start time could be a later process's.
	p.start, _ = procutil.StartTime(p.pid)
	go func() {
		code, err := procutil.WaitExitedNoReap(pidfd)
		if err != nil {
			b.log.Warn("waiting for container init", "error", err)
		}
		p.code = code
		close(p.done)
	}()
	return nil
}

// reap collects init's zombie when no one else will: after a failed
// create, whose caller never learns init's pid.
func (p *initProc) reap() { procutil.Reap(p.pidfd) }

// configureInit walks init through creation (see the diagram in ipc).
func (b *boot) configureInit(types []specs.LinuxNamespaceType, nsFiles []*os.File, plan *ipc.GoferPlan) (*os.File, error) {
	p := b.init
	cfg := ipc.BootInitConfig{
		ID: b.args.ID, Bundle: b.args.Bundle, Rootfs: b.plan.Rootfs, Spec: b.plan.Spec,
		JoinNamespaces: types, PreserveFDs: len(b.args.ExtraFDs), ListenFDs: b.args.ListenFDs,
		UserNS: b.userNS, Debug: b.args.Config.Debug, Gofer: plan,
	}
	if b.cg != nil {
		cfg.CgroupPaths = b.cg.Saved().Paths
	}
	if err := b.startNetwork(); err != nil {
		return nil, err
	}
	var fds []int
	for _, f := range nsFiles {
		fds = append(fds, int(f.Fd()))
	}
	var fuse []*os.File
	if plan != nil {
		for _, f := range b.goferIO {
			fds = append(fds, int(f.Fd()))
		}
		// Opened here, outside the container's cgroup: its device rules
		// need not allow /dev/fuse for init to mount the gofer's trees.
		n := len(plan.Mounts)
		if plan.SharedRoot {
			n-- // the root is the shared gofer's mount, sent last
		}
		var err error
		if fuse, err = openFuse(n); err != nil {
			return nil, err
		}
		for _, f := range fuse {
			fds = append(fds, int(f.Fd()))
		}
		if plan.SharedRoot {
			fds = append(fds, int(b.shared.clone.Fd()))
		}
	}
	err := p.conn.Send(cfg, fds...)
	closeFiles(fuse)
	if b.shared != nil && b.shared.clone != nil {
		b.shared.clone.Close()
		b.shared.clone = nil
	}
	// Init holds the io sockets now; boot keeps none, so that the gofer
	// sees init's end go away if init dies.
	closeFiles(b.goferIO)
	b.goferIO = nil
	if err != nil {
		return nil, b.recvErr("configuring init", err)
	}
	var hreq ipc.InitHooksRequested
	if _, err := p.conn.WaitFor(&hreq); err != nil {
		return nil, b.recvErr("building the container", err)
	}
	procutil.Trace("boot", "init mounted")
	for _, k := range []hooks.Kind{hooks.Prestart, hooks.CreateRuntime} {
		if err := b.runHooks(k, specs.StateCreating); err != nil {
			return nil, err
		}
	}
	procutil.Trace("boot", "hooks run")
	if err := p.conn.Send(ipc.BootHooksDone{}); err != nil {
		return nil, b.recvErr("building the container", err)
	}
	var created ipc.InitCreated
	files, err := p.conn.WaitFor(&created)
	if err != nil {
		return nil, b.recvErr("building the container", err)
	}
	procutil.Trace("boot", "init created")
	if err := p.openInitNamespaces(b.ownNS); err != nil {
		closeFiles(files)
		return nil, err
	}
	if created.HasPty {
		if len(files) != 1 {
			closeFiles(files)
			return nil, fmt.Errorf("protocol error: InitCreated carried %d descriptors", len(files))
		}
		return files[0], nil
	}
	closeFiles(files)
	return nil, nil
}

// newPidNS reports whether the container has a pid namespace of its own.
func (b *boot) newPidNS() bool { return spec.NewNamespace(b.plan.Spec, specs.PIDNamespace) }
