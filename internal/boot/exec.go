package boot

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/spec"
)

// execNamespaces are the namespaces an exec'd process joins through its
// helper; pid and time namespaces are joined by boot before the fork.
var execNamespaces = []specs.LinuxNamespaceType{
	specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace,
	specs.CgroupNamespace, specs.MountNamespace,
}

var nsProcName = map[specs.LinuxNamespaceType]string{
	specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
	specs.CgroupNamespace: "cgroup", specs.MountNamespace: "mnt", specs.PIDNamespace: "pid",
}

// execSetupTimeout bounds the helper's setup until the process runs.
const execSetupTimeout = 60 * time.Second

// exec runs a process in the container for a client and reports its exit on
// the same connection. It owns conn and files.
func (b *boot) exec(conn *ipc.Conn, req *ipc.ClientExecRequested, files []*os.File) {
	cmd, master, err := b.startExec(req, files)
	if err != nil {
		_ = conn.Send(ipc.FailedFrom("boot", err))
		conn.Close()
		return
	}
	b.execs.Add(1)
	b.mu.Lock()
	if b.execPids == nil {
		b.execPids = map[int]uint64{}
	}
	// Read while the process is an unreaped child: its pid is still its own.
	b.execPids[cmd.Process.Pid], _ = procutil.StartTime(cmd.Process.Pid)
	b.mu.Unlock()
	started := ipc.BootExecStarted{Pid: cmd.Process.Pid, HasPty: master != nil}
	var fds []int
	if master != nil {
		fds = append(fds, int(master.Fd()))
	}
	sendErr := conn.Send(started, fds...)
	if master != nil {
		master.Close()
	}
	done := make(chan struct{})
	if sendErr == nil {
		go b.relayExecSignals(conn, cmd, done, req.Detached)
	} else if req.Detached {
		_ = cmd.Process.Kill()
	}
	code, err := procutil.WaitCode(cmd)
	close(done)
	b.mu.Lock()
	delete(b.execPids, cmd.Process.Pid)
	b.mu.Unlock()
	if err != nil {
		b.log.Warn("exec wait", "error", err)
	}
	conn.SetDeadline(time.Now().Add(requestTimeout))
	_ = conn.Send(ipc.BootExecExited{ExitCode: code})
	conn.Close()
	b.execs.Done()
}

// relayExecSignals forwards the client's signal requests to the exec'd
// process until it exits or the client goes away; a detached exec's process
// dies with its proxy.
func (b *boot) relayExecSignals(conn *ipc.Conn, cmd *exec.Cmd, done chan struct{}, detached bool) {
	for {
		raw, err := conn.Recv()
		if err != nil {
			select {
			case <-done:
			default:
				if detached {
					_ = cmd.Process.Kill()
				}
			}
			return
		}
		raw.CloseFiles()
		var req ipc.ClientSignalRequested
		if raw.Decode(&req) != nil {
			continue
		}
		select {
		case <-done:
			return
		default:
			_ = cmd.Process.Signal(syscall.Signal(req.Signal))
		}
	}
}

// startExec spawns the exec helper in the container and walks it to execve.
func (b *boot) startExec(req *ipc.ClientExecRequested, files []*os.File) (*exec.Cmd, *os.File, error) {
	p := req.Process
	if p == nil {
		closeFiles(files)
		return nil, nil, errors.New("exec request without a process")
	}
	if err := spec.ValidateProcess(p, "process"); err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	var stdio [3]*os.File
	extra := files
	if !p.Terminal {
		if len(files) < 3+req.PreserveFDs {
			closeFiles(files)
			return nil, nil, fmt.Errorf("exec request carried %d descriptors, want %d", len(files), 3+req.PreserveFDs)
		}
		copy(stdio[:], files[:3])
		extra = files[3:]
	}
	select {
	case <-b.init.done:
		closeFiles(files)
		return nil, nil, errors.New("container is not running")
	default:
	}
	if b.init.ownTimeNS {
		// setns(2) into a time namespace needs a single-threaded caller,
		// which a Go process never is.
		closeFiles(files)
		return nil, nil, errors.New("exec into a container with its own time namespace is not supported")
	}
	exe, err := b.execExe()
	if err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	defer exe.Close()
	helperEnd, bootEnd, err := ipc.SocketPair("exec-sync")
	if err != nil {
		closeFiles(files)
		return nil, nil, err
	}
	var d procutil.Donations
	d.Donate("init-sync-fd", helperEnd)
	cmd := b.helperCmd(exe, stdio, extra, &d, "init", "--exec")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	startErr := b.spawnInContainerPidNS(cmd)
	helperEnd.Close()
	closeFiles(files)
	if startErr != nil {
		bootEnd.Close()
		return nil, nil, fmt.Errorf("start exec helper: %w", startErr)
	}
	conn := ipc.NewConn(bootEnd)
	defer conn.Close()
	master, err := b.configureExec(conn, cmd, req)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, nil, err
	}
	return cmd, master, nil
}

// spawnInContainerPidNS starts cmd as boot's child, in the container's pid
// namespace when it has one of its own, through the spawner: boot itself
// is filtered by then (bootfilter.go), and the exec helper must get only
// the spec's filter.
func (b *boot) spawnInContainerPidNS(cmd *exec.Cmd) error {
	return b.spawner.spawn(cmd, b.init.ns[specs.PIDNamespace])
}

// configureExec sends the helper its process and namespaces, places it in
// the container's cgroup and waits until it executed.
func (b *boot) configureExec(conn *ipc.Conn, cmd *exec.Cmd, req *ipc.ClientExecRequested) (*os.File, error) {
	conn.SetDeadline(time.Now().Add(execSetupTimeout))
	cfg := ipc.BootExecConfig{
		Process: req.Process, PreserveFDs: req.PreserveFDs,
		Seccomp: b.plan.Spec.Linux.Seccomp, Personality: b.plan.Spec.Linux.Personality,
		UserNS: b.userNS, Debug: b.args.Config.Debug,
	}
	var fds []int
	for _, t := range execNamespaces {
		if f := b.init.ns[t]; f != nil {
			cfg.Namespaces = append(cfg.Namespaces, t)
			fds = append(fds, int(f.Fd()))
		}
	}
	if err := conn.Send(cfg, fds...); err != nil {
		return nil, fmt.Errorf("configure exec helper: %w", err)
	}
	var joined ipc.InitExecJoined
	if _, err := conn.WaitFor(&joined); err != nil {
		return nil, err
	}
	// Forked by the spawner, which is in none of the container's cgroups:
	// moved by pid (one RCU grace period per exec).
	if b.cg != nil {
		if err := b.cg.AddPid(cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("cgroup: %w", err)
		}
	}
	if err := conn.Send(ipc.BootExecReleased{}); err != nil {
		return nil, err
	}
	var master *os.File
	if req.Process.Terminal {
		var ptyMsg ipc.InitPtyCreated
		files, err := conn.WaitFor(&ptyMsg)
		if err != nil {
			return nil, err
		}
		if len(files) != 1 {
			closeFiles(files)
			return nil, errors.New("protocol error: pty message without one descriptor")
		}
		master = files[0]
	}
	if err := b.awaitExec(conn, cmd.Process.Pid, specs.StateRunning); err != nil {
		if master != nil {
			master.Close()
		}
		return nil, err
	}
	return master, nil
}

// closeNamespaces drops boot's handles on init's namespaces.
func (p *initProc) closeNamespaces() {
	for t, f := range p.ns {
		f.Close()
		delete(p.ns, t)
	}
}

// ownNamespaces identifies boot's own namespaces (device and inode of each
// /proc/<pid>/ns link), read once at start: later, a thread of boot joins
// the container's network namespace to create the TAP, and when Go parks
// that thread it may be the main one, which /proc/self then shows.
type ownNamespaces map[string]unix.Stat_t

// readOwnNamespaces snapshots boot's namespaces.
// Precondition: no thread of this process has changed namespace yet.
func readOwnNamespaces() (ownNamespaces, error) {
	own := ownNamespaces{}
	for _, name := range append(slices.Collect(maps.Values(nsProcName)), "time") {
		var st unix.Stat_t
		if err := unix.Stat("/proc/self/ns/"+name, &st); err != nil {
			if name == "time" && errors.Is(err, unix.ENOENT) {
				continue // Linux < 5.6
			}
			return nil, fmt.Errorf("stat boot's %s namespace: %w", name, err)
		}
		own[name] = st
	}
	return own, nil
}

// has reports whether ns (an open namespace) is one of boot's own.
func (own ownNamespaces) has(name string, ns *os.File) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.Fd()), &st); err != nil {
		return false, fmt.Errorf("stat namespace: %w", err)
	}
	mine, ok := own[name]
	return ok && mine.Dev == st.Dev && mine.Ino == st.Ino, nil
}

// openInitNamespaces keeps handles on init's namespaces for exec: only
// those the container has of its own. A namespace init shares with boot
// (the host's network under `runc spec --rootless`, say) is one an exec'd
// process is in already, and joining it may not even be allowed.
// Precondition: init is alive and is boot's unwaited child (no pid reuse).
func (p *initProc) openInitNamespaces(own ownNamespaces) error {
	p.ns = map[specs.LinuxNamespaceType]*os.File{}
	for t, name := range nsProcName {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", p.pid, name))
		if err != nil {
			p.closeNamespaces()
			return fmt.Errorf("open init's %s namespace: %w", name, err)
		}
		shared, err := own.has(name, f)
		if err != nil {
			f.Close()
			p.closeNamespaces()
			return err
		}
		if shared {
			f.Close()
			continue
		}
		p.ns[t] = f
	}
	if tf, err := os.Open(fmt.Sprintf("/proc/%d/ns/time", p.pid)); err == nil {
		shared, err := own.has("time", tf)
		tf.Close()
		p.ownTimeNS = err == nil && !shared && own["time"].Ino != 0
	}
	return nil
}

// execExe returns a descriptor of the protected moat for an exec helper:
// boot's own while it has one (always, for the read-only overlay), else a fresh
// copy. Boot keeps no memfd copy while the container runs (it would cost
// the binary's size in memory per container); a copy costs a few
// milliseconds per exec, as runc's does.
func (b *boot) execExe() (*os.File, error) {
	b.mu.Lock()
	if b.exe != nil {
		fd, err := unix.FcntlInt(b.exe.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		b.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("dup the protected executable: %w", err)
		}
		return os.NewFile(uintptr(fd), "moat-exe"), nil
	}
	b.mu.Unlock()
	// Only a copy is left to make here: boot drops nothing else.
	c, err := procutil.StartExeCopy(b.userNS)
	if err != nil {
		return nil, err
	}
	if err := c.Wait(); err != nil {
		c.File.Close()
		return nil, err
	}
	return c.File, nil
}

// dropExe closes the creation copy of moat once the container runs (a
// read-only overlay costs nothing and stays).
func (b *boot) dropExe() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exe != nil && b.exeCopied {
		b.exe.Close()
		b.exe = nil
	}
}
