package container

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/network"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
	"github.com/moat-sandbox/moat/internal/sandbox"
	"github.com/moat-sandbox/moat/internal/seccomp"
	"github.com/moat-sandbox/moat/internal/spec"
	"github.com/moat-sandbox/moat/internal/state"
)

// CreateOptions are `moat create`'s arguments.
type CreateOptions struct {
	ID            string
	Bundle        string
	PidFile       string
	ConsoleSocket string
	PreserveFDs   int
	Stdio         [3]*os.File
	// AttachTty: `run -t` without --console-socket keeps the pty master
	// for the CLI instead of sending it to a socket.
	AttachTty bool
	// Foreground: a `run` that waits. Without --log, boot logs to the
	// CLI's stderr (Stdio[2]), where its user sees warnings and egress
	// denials; otherwise to boot.log in the state directory.
	Foreground bool
	// Spec, when set, is the configuration made in memory (`moat do`):
	// no config.json is read, and Bundle is the absolute directory that
	// stands for the bundle.
	Spec *specs.Spec
	// Extra are more descriptors for the container, right after the
	// --preserve-fds ones.
	Extra []*os.File
	// HostBoot: this process may host boot instead of spawning `moat
	// boot` (a foreground run: it relays signals and is a subreaper).
	// It does unless boot needs a user namespace of its own.
	HostBoot bool
}

// Created is a container in state created.
type Created struct {
	State   *state.State
	Sandbox *sandbox.Sandbox
	// Pty is the terminal master when AttachTty.
	Pty *os.File
}

// Create creates a container: boot and init run, the root is built, the
// process waits for start.
// Postcondition on error: no state, processes, mounts or cgroups remain.
func (r *Runtime) Create(o CreateOptions) (c *Created, err error) {
	var b *spec.Bundle
	if o.Spec != nil {
		b, err = spec.FromSpec(o.Bundle, o.Spec)
	} else {
		b, err = spec.Load(o.Bundle)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range b.Warnings {
		r.Warn(w)
	}
	procutil.Trace("cli", "spec loaded")
	if err := checkTerminal(b, o); err != nil {
		return nil, err
	}
	if b.Spec.Process.Terminal {
		// The terminal is the process's stdio. Ours must not reach the
		// container: a shim reading `create`'s output until EOF (go-runc
		// with --console-socket) would wait as long as init held it.
		o.Stdio = [3]*os.File{}
	}
	cfg, err := r.Config.WithAnnotations(b.Spec.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", spec.ErrInvalid, err)
	}
	if cfg.SeccompDefault && b.Spec.Linux.Seccomp == nil {
		b.Spec.Linux.Seccomp = seccomp.Default()
	}
	sandboxNet, err := network.ApplyMode(b.Spec, cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", spec.ErrInvalid, err)
	}
	userns, err := rootless.Decide(r.Config.Rootless, b.Spec)
	if err != nil {
		return nil, err
	}
	// A memfd copy of moat takes a few milliseconds: it is made while boot
	// starts (boot waits for its seals).
	procutil.Trace("cli", "user namespace decided")
	exe, err := procutil.StartExeCopy(userns.NewUserNS)
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	if err := checkSeccomp(b.Spec.Linux.Seccomp); err != nil {
		return nil, err
	}
	var console *os.File
	if o.ConsoleSocket != "" {
		if console, err = dialConsole(o.ConsoleSocket); err != nil {
			return nil, err
		}
		defer console.Close()
	}
	procutil.Trace("cli", "seccomp checked")
	st, lk, err := r.Store.Create(o.ID)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	plan := &ipc.Plan{Spec: b.Spec, Rootfs: b.Rootfs}
	if sandboxNet {
		plan.Network, err = addEtcMounts(cfg, b, st.Dir(), userns)
	}
	if err == nil && cfg.FileAccess == config.FileAccessGofer {
		plan.Gofer, err = goferPlan(b, cfg)
		if err == nil {
			plan.OverlaySize, err = overlaySize(cfg, b.Spec.Linux.Resources)
		}
	}
	if err == nil {
		procutil.Trace("cli", "plan made")
		c, err = r.createLocked(st, b, plan, cfg, o, exe, userns)
	}
	if err != nil {
		st.Remove()
		return nil, err
	}
	if c.Sandbox.Pty != nil {
		if console != nil {
			err = sendConsole(console, c.Sandbox.Pty)
			c.Sandbox.Pty.Close()
			if err != nil {
				r.destroyCreated(c)
				return nil, err
			}
		} else {
			c.Pty = c.Sandbox.Pty
		}
	}
	return c, nil
}

// addEtcMounts gives a sandbox-network container its generated
// resolv.conf, hosts and hostname, kept in its state directory.
//
// As root with the spec's own user namespace, init runs as the container's
// root, a host id with no access to root's 0700 state directories: they
// become 0711 (searchable, not listable; what they hold stays 0600), as
// Docker does for its remapped root.
//
// It returns the network's part of the plan: the upstream resolvers are
// --dns's, else the host's resolv.conf's, read here once.
func addEtcMounts(cfg *config.Config, b *spec.Bundle, dir string, userns *rootless.Mode) (*ipc.NetworkPlan, error) {
	settings, err := cfg.NetworkSettings()
	if err != nil {
		return nil, err
	}
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the host's resolv.conf: %w", err)
	}
	if !userns.Rootless && userns.NewUserNS {
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				return nil, fmt.Errorf("let the container's root reach its /etc files: %w", err)
			}
		}
	}
	if err := network.AddEtcMounts(b.Spec, dir, hostResolv, settings.Config); err != nil {
		return nil, err
	}
	servers := settings.Config.DNSServers
	if len(servers) == 0 {
		servers = network.HostDNSServers(hostResolv)
	}
	np := &ipc.NetworkPlan{}
	for _, ap := range servers {
		np.DNSServers = append(np.DNSServers, ap.String())
	}
	return np, nil
}

// notifyForbidden are syscalls moat itself makes between installing the
// filter and execve: a notify rule on them would wait on an agent that has
// not received the listener yet.
var notifyForbidden = map[string]bool{
	"sendmsg": true, "sendto": true, "write": true, "close": true, "futex": true,
	"execve": true, "execveat": true, "exit": true, "exit_group": true,
	"rt_sigprocmask": true, "rt_sigreturn": true, "close_range": true, "fcntl": true,
}

// checkSeccomp compiles the profile once in the CLI, so that a bad one fails
// create before any process starts.
func checkSeccomp(sc *specs.LinuxSeccomp) error {
	if sc == nil {
		return nil
	}
	f, err := seccomp.Compile(sc)
	if err != nil {
		return fmt.Errorf("%w: linux.seccomp: %v", spec.ErrInvalid, err)
	}
	if !f.Notify {
		return nil
	}
	if sc.ListenerPath == "" {
		return fmt.Errorf("%w: linux.seccomp: SCMP_ACT_NOTIFY needs listenerPath", spec.ErrInvalid)
	}
	for i, r := range sc.Syscalls {
		if r.Action != specs.ActNotify {
			continue
		}
		for _, n := range r.Names {
			if notifyForbidden[n] {
				return fmt.Errorf("%w: linux.seccomp.syscalls[%d]: SCMP_ACT_NOTIFY on %s is not supported (moat makes that call before execve)", spec.ErrInvalid, i, n)
			}
		}
	}
	return nil
}

func checkTerminal(b *spec.Bundle, o CreateOptions) error {
	tty := b.Spec.Process.Terminal
	switch {
	case tty && o.ConsoleSocket == "" && !o.AttachTty:
		return fmt.Errorf("process.terminal is set: pass --console-socket (or use run without --detach)")
	case !tty && o.ConsoleSocket != "":
		return fmt.Errorf("--console-socket given but process.terminal is false")
	case tty && o.AttachTty:
		return needTerminal(o.Stdio[0], "process.terminal is true in "+filepath.Join(b.Dir, "config.json"),
			`set "terminal": false under "process" (moat spec writes it so unless --tty)`)
	}
	return nil
}

// needTerminal refuses to attach a container's terminal to a stdin that is
// not one: nobody could type into it, and its shell would ignore the
// SIGTERM that ends a run (runc refuses too).
func needTerminal(stdin *os.File, what, fix string) error {
	if stdin != nil {
		if _, err := unix.IoctlGetTermios(int(stdin.Fd()), unix.TCGETS); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s but stdin is not a terminal: run it from a terminal, pass --console-socket, or %s", what, fix)
}

// hasPoststop reports whether the spec has poststop hooks. A run that hosts
// boot carries boot's seccomp filter from create on, and the hooks its
// delete runs would inherit it: such a run keeps a separate boot.
func hasPoststop(s *specs.Spec) bool {
	return s.Hooks != nil && len(s.Hooks.Poststop) > 0
}

func (r *Runtime) createLocked(st *state.State, b *spec.Bundle, plan *ipc.Plan, cfg *config.Config, o CreateOptions, exe *procutil.ExeCopy, userns *rootless.Mode) (*Created, error) {
	logFile, err := r.bootLog(st, o)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	extra, listen := extraFiles(o.PreserveFDs)
	if len(o.Extra) > 0 {
		extra = append(append(append([]*os.File{}, extra[:o.PreserveFDs]...), o.Extra...), extra[o.PreserveFDs:]...)
	}
	sb, err := sandbox.Start(sandbox.Options{
		ID: st.ID, Bundle: b.Dir, Plan: plan, StateDir: st.Dir(), Config: cfg, LogFile: logFile,
		Stdio: o.Stdio, Extra: extra, ListenFDs: listen, Exe: exe, UserNS: userns,
		Hosted: o.HostBoot && !userns.NewUserNS && !hasPoststop(plan.Spec),
	}, r.Log)
	if err != nil {
		return nil, err
	}
	c := &Created{State: st, Sandbox: sb}
	for _, w := range sb.Created.Warnings {
		r.Warn(w)
	}
	st.Bundle, st.Plan = b.Dir, plan
	st.Created = time.Now().UTC()
	st.BootPid = sb.Pid
	if st.BootStart, err = procutil.StartTime(st.BootPid); err != nil {
		// Without its start time boot could not be told from a process
		// that reuses its pid.
		sb.Abort()
		return nil, fmt.Errorf("moat boot: %w", err)
	}
	st.InitPid, st.InitStart = sb.Created.InitPid, sb.Created.InitStart
	st.Cgroup = sb.Created.Cgroup
	st.Rootless = userns.Rootless
	procutil.Trace("cli", "boot reported created")
	if err := st.Save(); err == nil {
		err = writePidFile(o.PidFile, st.InitPid)
	}
	if err == nil {
		err = sb.Commit()
	}
	if err != nil {
		sb.Abort()
		return nil, err
	}
	return c, nil
}

// destroyCreated undoes a create after the commit.
func (r *Runtime) destroyCreated(c *Created) {
	_ = r.Kill(c.State.ID, unix.SIGKILL, false)
	c.Sandbox.WaitGone(c.State.BootStart, 10*time.Second)
	c.State.Remove()
}

// bootLog opens where boot logs: the --log file; else a foreground run's
// stderr (boot.log would go with the container, unread); else boot.log in
// the state directory.
func (r *Runtime) bootLog(st *state.State, o CreateOptions) (*os.File, error) {
	to := r.LogFile
	if to == nil && o.Foreground {
		to = o.Stdio[2]
	}
	if to != nil {
		fd, err := unix.Dup(int(to.Fd()))
		if err != nil {
			return nil, err
		}
		unix.CloseOnExec(fd)
		return os.NewFile(uintptr(fd), "log"), nil
	}
	return os.OpenFile(filepath.Join(st.Dir(), state.BootLogName), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_CLOEXEC, 0o600)
}

// extraFiles collects the descriptors the container gets at 3..: the
// --preserve-fds ones, then systemd socket activation's (LISTEN_FDS).
func extraFiles(preserve int) ([]*os.File, int) {
	var out []*os.File
	for i := 0; i < preserve; i++ {
		out = append(out, os.NewFile(uintptr(3+i), "preserved-"+strconv.Itoa(3+i)))
	}
	listen := 0
	if n, err := strconv.Atoi(os.Getenv("LISTEN_FDS")); err == nil && n > 0 {
		if os.Getenv("LISTEN_PID") == "" || os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
			for i := 0; i < n; i++ {
				fd := 3 + preserve + i
				out = append(out, os.NewFile(uintptr(fd), "listen-"+strconv.Itoa(fd)))
			}
			listen = n
		}
	}
	return out, listen
}

// writePidFile records a pid atomically (a shim reads it right away): the
// container init's for create, as runc's; a shim or conmon waits on it.
func writePidFile(path string, pid int) error {
	if path == "" {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// A fresh name (O_EXCL): a fixed one could be a symlink planted in a
	// shared directory, and we may be root.
	f, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".*")
	if err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	tmp := f.Name()
	_, err = f.WriteString(strconv.Itoa(pid))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, abs)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// dialConsole connects to the --console-socket.
func dialConsole(path string) (*os.File, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	defer c.Close()
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", path, err)
	}
	return f, nil
}

// sendConsole sends the pty master over the console socket the way runc
// does: the name as data, the fd as SCM_RIGHTS.
func sendConsole(sock, master *os.File) error {
	name := []byte("/dev/ptmx")
	err := unix.Sendmsg(int(sock.Fd()), name, unix.UnixRights(int(master.Fd())), nil, 0)
	if err != nil {
		return fmt.Errorf("send terminal to console socket: %w", err)
	}
	return nil
}

var errNoProcess = errors.New("container has no process")
