// Package initproc runs inside the container init helper (`moat init`): it
// builds the container's root filesystem in its new namespaces, pivots into
// it, waits for start, then applies credentials and confinement and executes
// the container process. The same package serves `moat init --exec`, which
// joins a running container's namespaces for `moat exec`.
//
// Everything here runs on the main goroutine, locked to the main OS thread:
// namespace, credential and seccomp changes are per thread, and execve
// carries the calling thread's state into the container process.
package initproc

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/spec"
)

// Args are the donated descriptors of `moat init`.
type Args struct {
	InitSyncFD int // socket to boot
	Exec       bool
}

// configTimeout bounds the wait for boot's first message.
const configTimeout = 30 * time.Second

// Main runs the init helper. It returns only on failure (after reporting the
// error to boot, when it can); on success the process image is replaced.
func Main(a Args, log *slog.Logger) error {
	procutil.Trace("init", "main")
	// A process of the container must not ptrace us or open our /proc files
	// while we hold host descriptors.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set non-dumpable: %w", err)
	}
	if !a.Exec {
		// Boot dies => the container dies. Usually set at fork already;
		// not when init was forked into a joined pid namespace.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("set parent death signal: %w", err)
		}
	}
	conn, err := ipc.FromFD(a.InitSyncFD, "init-sync")
	if err != nil {
		return err
	}
	var runErr error
	if a.Exec {
		runErr = runExec(conn, log)
	} else {
		runErr = runInit(conn, log)
	}
	if runErr != nil {
		_ = conn.Send(ipc.FailedFrom("init", runErr))
	}
	return runErr
}

// runInit creates the container, waits for start, and executes the process.
func runInit(conn *ipc.Conn, log *slog.Logger) error {
	conn.SetDeadline(time.Now().Add(configTimeout))
	var cfg ipc.BootInitConfig
	files, err := conn.WaitFor(&cfg)
	if err != nil {
		return err
	}
	procutil.Trace("init", "config received")
	conn.SetDeadline(time.Time{})
	l, tty, err := create(conn, &cfg, files, log)
	if err != nil {
		return err
	}
	created := ipc.InitCreated{HasPty: tty != nil}
	var sendFDs []int
	if tty != nil {
		sendFDs = append(sendFDs, int(tty.master.Fd()))
	}
	if err := conn.Send(created, sendFDs...); err != nil {
		return err
	}
	if tty != nil {
		tty.master.Close()
		l.tty = tty.slave
	}
	l.toBoot = conn
	// Wait for start: no deadline (a container may stay created for as long
	// as its owner likes); the wait ends if boot goes away.
	var start ipc.BootStartRequested
	if _, err := conn.WaitFor(&start); err != nil {
		return fmt.Errorf("waiting for start: %w", err)
	}
	procutil.Trace("init", "start received")
	state := hooks.State(cfg.ID, cfg.Bundle, os.Getpid(), specs.StateCreated, cfg.Spec)
	if err := hooks.Run(cfg.Spec, hooks.StartContainer, state); err != nil {
		return err
	}
	return l.execute()
}

// create builds the container's root and returns the prepared launch.
func create(conn *ipc.Conn, cfg *ipc.BootInitConfig, files []*os.File, log *slog.Logger) (*launch, *pty, error) {
	s := cfg.Spec
	if len(files) < len(cfg.JoinNamespaces) {
		return nil, nil, fmt.Errorf("boot sent %d descriptors for %d namespaces", len(files), len(cfg.JoinNamespaces))
	}
	nsFiles, ioFiles := files[:len(cfg.JoinNamespaces)], files[len(cfg.JoinNamespaces):]
	g, err := newGoferRoot(cfg, ioFiles)
	if err != nil {
		return nil, nil, err
	}
	if g != nil {
		defer g.close()
	}
	if err := joinNamespaces(cfg.JoinNamespaces, nsFiles); err != nil {
		return nil, nil, err
	}
	cg := &cgroupView{paths: cfg.CgroupPaths}
	if spec.NewNamespace(s, specs.CgroupNamespace) {
		// Unshared only now, after boot put us in the container's cgroup,
		// so the namespace is rooted there.
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return nil, nil, fmt.Errorf("new cgroup namespace: %w", err)
		}
		cg.ownNS = true
	}
	if spec.NewNamespace(s, specs.TimeNamespace) {
		if err := newTimeNamespace(s.Linux.TimeOffsets); err != nil {
			return nil, nil, err
		}
	}
	if err := setupNamespaced(s); err != nil {
		return nil, nil, err
	}
	r, err := buildRoot(cfg, cg, g)
	if err != nil {
		return nil, nil, err
	}
	defer r.close()
	procutil.Trace("init", "root built")
	if err := conn.Send(ipc.InitHooksRequested{}); err != nil {
		return nil, nil, err
	}
	var done ipc.BootHooksDone
	if _, err := conn.WaitFor(&done); err != nil {
		return nil, nil, err
	}
	state := hooks.State(cfg.ID, cfg.Bundle, os.Getpid(), specs.StateCreating, s)
	if err := hooks.Run(s, hooks.CreateContainer, state); err != nil {
		return nil, nil, err
	}
	tty, err := finishRoot(r, s)
	if err != nil {
		return nil, nil, err
	}
	procutil.Trace("init", "pivoted")
	l, err := prepareLaunch(s.Process, s.Linux.Seccomp, s.Linux.Personality, cfg.PreserveFDs)
	if err != nil {
		tty.close()
		return nil, nil, err
	}
	if cfg.ListenFDs > 0 {
		// Socket activation (sd_listen_fds): the sockets are the last
		// ListenFDs of the preserved descriptors, and LISTEN_PID must be
		// the pid that will run the program: ours, as seen inside.
		l.env = append(withoutListenEnv(l.env),
			fmt.Sprintf("LISTEN_FDS=%d", cfg.ListenFDs), fmt.Sprintf("LISTEN_PID=%d", os.Getpid()))
	}
	log.Debug("container created", "program", l.path)
	return l, tty, nil
}

func withoutListenEnv(env []string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "LISTEN_FDS=") && !strings.HasPrefix(e, "LISTEN_PID=") {
			out = append(out, e)
		}
	}
	return out
}

// newGoferRoot takes the io sockets to the gofer when the root comes from it.
func newGoferRoot(cfg *ipc.BootInitConfig, io []*os.File) (*goferRoot, error) {
	if cfg.Gofer == nil {
		for _, f := range io {
			f.Close()
		}
		return nil, nil
	}
	n := len(cfg.Gofer.Mounts)
	g := &goferRoot{plan: cfg.Gofer, base: spec.CoverDir(cfg.Rootfs), userNS: cfg.UserNS}
	if cfg.Gofer.SharedRoot {
		// The root is a shared gofer's mount (sent last); the bind mounts
		// come as usual.
		if n < 1 || len(io) != 2*(n-1)+1 {
			return nil, fmt.Errorf("boot sent %d gofer descriptors for a shared root and %d served trees", len(io), n-1)
		}
		g.fuse = append([]*os.File{io[len(io)-1]}, io[n-1:len(io)-1]...)
		g.io = []*ipc.Conn{nil}
		for _, f := range io[:n-1] {
			g.io = append(g.io, ipc.NewConn(f))
		}
		return g, nil
	}
	if len(io) != 2*n {
		return nil, fmt.Errorf("boot sent %d gofer descriptors for %d served trees", len(io), n)
	}
	g.fuse = io[n:]
	for _, f := range io[:n] {
		g.io = append(g.io, ipc.NewConn(f))
	}
	return g, nil
}

// buildRoot mounts the root filesystem and every spec mount, and populates
// /dev.
func buildRoot(cfg *ipc.BootInitConfig, cg *cgroupView, g *goferRoot) (*rootfs, error) {
	s := cfg.Spec
	var r *rootfs
	var err error
	if g == nil {
		if err := prepareRoot(cfg.Rootfs, s); err != nil {
			return nil, err
		}
		r, err = openRoot(cfg.Rootfs, cfg.UserNS)
	} else {
		if err := isolateMounts(cfg.Rootfs, s); err != nil {
			return nil, err
		}
		r, err = g.build(s)
	}
	if err != nil {
		return nil, err
	}
	for i, m := range s.Mounts {
		m.Destination = cleanDest(m.Destination)
		if err := r.mountSpecOrGofer(i, m, cg, g); err != nil {
			r.close()
			return nil, err
		}
	}
	if devNeedsSetup(s) {
		if err := r.setupDev(s); err != nil {
			r.close()
			return nil, err
		}
	}
	if g != nil {
		if err := g.exposeUpper(r, s); err != nil {
			r.close()
			return nil, err
		}
	}
	// Like runc, a missing working directory is created (inside the root).
	if cwd, err := r.ensureDir(s.Process.Cwd); err != nil {
		r.close()
		return nil, fmt.Errorf("process.cwd: %w", err)
	} else {
		cwd.Close()
	}
	return r, nil
}

// finishRoot creates the terminal, masks and protects paths, pivots and
// makes the root read-only when asked.
func finishRoot(r *rootfs, s *specs.Spec) (*pty, error) {
	var tty *pty
	var err error
	if s.Process.Terminal {
		if tty, err = r.containerPty(s.Process); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*pty, error) {
		tty.close()
		return nil, err
	}
	if err := r.maskPaths(s.Linux.MaskedPaths); err != nil {
		return fail(err)
	}
	if err := r.readonlyPaths(s.Linux.ReadonlyPaths); err != nil {
		return fail(err)
	}
	if s.Root.Readonly && !r.goferRoot {
		// (A gofer root is read-only already: its FUSE mount, and the
		// gofer itself, refuse writes.)
		if err := r.readonlyRoot(); err != nil {
			return fail(err)
		}
	}
	if s.Process.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(*s.Process.OOMScoreAdj)), 0); err != nil {
			return fail(fmt.Errorf("set oom_score_adj: %w", err))
		}
	}
	if err := r.pivot(); err != nil {
		return fail(err)
	}
	if p, ok := propagationFlags[s.Linux.RootfsPropagation]; ok {
		// The bind of the root copied the private parent's propagation.
		if err := unix.Mount("", "/", "", p, ""); err != nil {
			return fail(fmt.Errorf("rootfsPropagation %s: %w", s.Linux.RootfsPropagation, err))
		}
	}
	return tty, nil
}

// setupNamespaced applies hostname, domainname, sysctls and loopback in the
// container's own namespaces.
// Precondition: the host's /proc is still mounted (before pivot_root).
func setupNamespaced(s *specs.Spec) error {
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return fmt.Errorf("set domainname: %w", err)
		}
	}
	for k, v := range s.Linux.Sysctl {
		p := filepath.Join("/proc/sys", filepath.FromSlash(sysctlPath(k)))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	if spec.NewNamespace(s, specs.NetworkNamespace) {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	return nil
}

// sysctlPath maps "net.ipv4.ip_forward" to "net/ipv4/ip_forward". A key
// already in path form (with "/") is kept: its dots are literal.
func sysctlPath(k string) string {
	if strings.Contains(k, "/") {
		return k
	}
	out := []byte(k)
	for i, c := range out {
		if c == '.' {
			out[i] = '/'
		}
	}
	return string(out)
}

// loopbackUp brings lo up in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}
	return nil
}

// newTimeNamespace prepares a time namespace that the container process
// enters at execve (time_for_children), with the spec's clock offsets. The
// offsets can only be written while no process is inside yet, which is why
// init does not clone into it.
func newTimeNamespace(offsets map[string]specs.LinuxTimeOffset) error {
	if err := unix.Unshare(unix.CLONE_NEWTIME); err != nil {
		return fmt.Errorf("new time namespace: %w", err)
	}
	for clock, off := range offsets {
		if clock != "monotonic" && clock != "boottime" {
			return fmt.Errorf("time offset for unknown clock %q (want monotonic or boottime)", clock)
		}
		line := fmt.Sprintf("%s %d %d", clock, off.Secs, off.Nanosecs)
		if err := os.WriteFile("/proc/self/timens_offsets", []byte(line), 0); err != nil {
			return fmt.Errorf("time offset %s: %w", line, err)
		}
	}
	return nil
}

var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.NetworkNamespace: unix.CLONE_NEWNET, specs.IPCNamespace: unix.CLONE_NEWIPC,
	specs.UTSNamespace: unix.CLONE_NEWUTS, specs.MountNamespace: unix.CLONE_NEWNS,
	specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.PIDNamespace: unix.CLONE_NEWPID,
	specs.TimeNamespace: unix.CLONE_NEWTIME,
}

// joinNamespaces setns()es the calling thread into each given namespace.
// The mount namespace goes last, and needs an unshared fs context first.
// Precondition: locked OS thread; pid and time namespaces were joined by
// boot before the fork (they only apply to children).
func joinNamespaces(types []specs.LinuxNamespaceType, files []*os.File) error {
	if len(types) > len(files) {
		return fmt.Errorf("boot sent %d namespace descriptors for %d namespaces", len(files), len(types))
	}
	var mnt *os.File
	for i, t := range types {
		if t == specs.MountNamespace {
			mnt = files[i]
			continue
		}
		if err := unix.Setns(int(files[i].Fd()), nsFlags[t]); err != nil {
			return fmt.Errorf("join %s namespace: %w", t, err)
		}
	}
	if mnt != nil {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			return fmt.Errorf("unshare fs: %w", err)
		}
		if err := unix.Setns(int(mnt.Fd()), unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("join mount namespace: %w", err)
		}
	}
	for _, f := range files {
		f.Close()
	}
	return nil
}
