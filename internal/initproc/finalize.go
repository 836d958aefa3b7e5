package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/seccomp"
	"github.com/moat-sandbox/moat/internal/spec"
)

// launch is a container process ready to be executed: everything that can
// fail for a bad spec was checked while the container was being created.
type launch struct {
	proc        *specs.Process
	path        string // resolved program path inside the root
	env         []string
	filter      *seccomp.Filter // nil without a seccomp profile
	personality *specs.LinuxPersonality
	preserveFDs int
	tty         *os.File // pty slave when process.terminal
	// toBoot carries the seccomp listener (SCMP_ACT_NOTIFY) to boot, which
	// hands it to the spec's listenerPath.
	toBoot *ipc.Conn
}

// prepareLaunch resolves the program and compiles the seccomp profile.
// Precondition: runs after pivot_root, so paths are the container's.
func prepareLaunch(p *specs.Process, sc *specs.LinuxSeccomp, pers *specs.LinuxPersonality, preserve int) (*launch, error) {
	env := withHome(p.Env, int(p.User.UID))
	path, err := lookPath(p.Args[0], pathOf(env), p.Cwd)
	if err != nil {
		return nil, err
	}
	l := &launch{proc: p, path: path, env: env, preserveFDs: preserve, personality: pers}
	if sc != nil {
		f, err := seccomp.Compile(sc)
		if err != nil {
			return nil, fmt.Errorf("seccomp: %w", err)
		}
		l.filter = f
	}
	return l, nil
}

func pathOf(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// lookPath finds file as execvp would, in the container's PATH.
func lookPath(file, path, cwd string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("exec %q: %w", file, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in $PATH", file)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	if st.Mode()&0o111 == 0 {
		return errors.New("permission denied (not executable)")
	}
	return nil
}

// withHome adds HOME from the container's /etc/passwd when the spec has
// none, as runc does.
func withHome(env []string, uid int) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := "/"
	if f, err := os.Open("/etc/passwd"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Split(sc.Text(), ":")
			if len(fs) >= 6 && fs[2] == strconv.Itoa(uid) {
				home = fs[5]
				break
			}
		}
		f.Close()
	}
	return append(append([]string{}, env...), "HOME="+home)
}

// execute applies the process's credentials and confinement and executes it.
// It returns only on failure.
// Precondition: runs on the locked main thread, after pivot_root, with every
// container-visible descriptor already in place at 0..2+preserveFDs.
func (l *launch) execute() error {
	p := l.proc
	if l.tty != nil {
		if err := useTerminal(l.tty); err != nil {
			return err
		}
	}
	if l.personality != nil {
		if err := setPersonality(l.personality); err != nil {
			return err
		}
	}
	if err := setExecLabel(p); err != nil {
		return err
	}
	if err := chdirVerified(p.Cwd); err != nil {
		return err
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	} else {
		unix.Umask(0o022)
	}
	// Before any filter: an old profile may not allow close_range.
	if err := closeExtraFDs(l.preserveFDs); err != nil {
		return err
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	// As late as the capability to raise them allows: limits such as a
	// small RLIMIT_AS must not hit moat's own remaining work.
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	// Without no_new_privs the filter needs CAP_SYS_ADMIN: install it before
	// the capabilities go (the profile must then allow the uid switch).
	if l.filter != nil && !p.NoNewPrivileges {
		if err := l.installSeccomp(); err != nil {
			return err
		}
	}
	if err := l.switchUserKeepDeathSignal(p); err != nil {
		return err
	}
	if l.filter != nil && p.NoNewPrivileges {
		if err := l.installSeccomp(); err != nil {
			return err
		}
	}
	procutil.Trace("init", "execve")
	err := unix.Exec(l.path, p.Args, l.env)
	return fmt.Errorf("exec %s: %w", l.path, err)
}

func (l *launch) installSeccomp() error {
	fd, err := l.filter.Install()
	if err != nil {
		return fmt.Errorf("install seccomp filter: %w", err)
	}
	if fd < 0 {
		return nil
	}
	// Boot keeps the listener alive across our execve and passes it on: a
	// notified syscall waits for the agent, never for us.
	err = l.toBoot.Send(ipc.InitSeccompListener{}, fd)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("send seccomp listener to boot: %w", err)
	}
	return nil
}

// chdirVerified enters the working directory and checks that it is inside
// the container's root: a descriptor leaked from the host (CVE-2024-21626)
// would leave the cwd outside it, where getcwd reports "(unreachable)".
func chdirVerified(cwd string) error {
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("chdir to the process's cwd %q: %w", cwd, err)
	}
	wd, err := unix.Getwd()
	if err != nil {
		return fmt.Errorf("working directory %q is outside the container: %w", cwd, err)
	}
	if !filepath.IsAbs(wd) {
		return fmt.Errorf("working directory %q is outside the container (%s)", cwd, wd)
	}
	return nil
}

func setRlimits(rls []specs.POSIXRlimit) error {
	for _, r := range rls {
		res, _ := spec.RlimitByName(r.Type)
		// syscall.Setrlimit also stops Go from restoring its saved
		// RLIMIT_NOFILE at exec.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			var cur syscall.Rlimit
			if err == syscall.EPERM && syscall.Getrlimit(res, &cur) == nil && r.Hard > cur.Max {
				return fmt.Errorf("process.rlimits: %s hard limit %d is above this host's %d, which only CAP_SYS_RESOURCE in the host's user namespace may raise: lower it in the spec (or raise the caller's limit, e.g. ulimit -H)", r.Type, r.Hard, cur.Max)
			}
			return fmt.Errorf("process.rlimits: set %s to %d/%d: %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// Personality domains (linux/personality.h).
const (
	perLinux   = 0x0000
	perLinux32 = 0x0008
)

// personalityFlags: the OCI spec defines no flag names yet.
var personalityFlags = map[specs.LinuxPersonalityFlag]uint{}

func setPersonality(p *specs.LinuxPersonality) error {
	dom := uint(perLinux)
	if p.Domain == specs.PerLinux32 {
		dom = perLinux32
	}
	for _, f := range p.Flags {
		v, ok := personalityFlags[f]
		if !ok {
			return fmt.Errorf("personality flag %q is not supported", f)
		}
		dom |= v
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(dom), 0, 0); errno != 0 {
		return fmt.Errorf("personality %s: %w", p.Domain, errno)
	}
	return nil
}

// setExecLabel applies the AppArmor profile or SELinux label for the next
// execve, when the host enforces that module.
func setExecLabel(p *specs.Process) error {
	var attr, value string
	switch {
	case p.ApparmorProfile != "" && spec.AppArmorEnabled():
		attr, value = "/proc/thread-self/attr/apparmor/exec", "exec "+p.ApparmorProfile
	case p.SelinuxLabel != "" && spec.SELinuxEnabled():
		attr, value = "/proc/thread-self/attr/exec", p.SelinuxLabel
	default:
		return nil
	}
	if err := os.WriteFile(attr, []byte(value), 0); err != nil {
		return fmt.Errorf("set exec label %q: %w", value, err)
	}
	return nil
}

// closeExtraFDs keeps 0..2+preserve open across execve and marks every other
// descriptor close-on-exec.
func closeExtraFDs(preserve int) error {
	first := 3 + preserve
	if err := procutil.CloseOnExecFrom(first); err != nil {
		return fmt.Errorf("close extra descriptors: %w", err)
	}
	for fd := 3; fd < first; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("preserved descriptor %d: %w", fd, err)
		}
	}
	return nil
}

// switchUserKeepDeathSignal switches to the process's user. Changing ids
// clears the parent-death signal, and init's (boot dies => the container
// dies) must outlive the switch: it is set again, also under a seccomp
// filter already in place (which may refuse prctl: then only without a
// filter is that an error), and a boot that died in between is noticed
// through the sync socket (its parent pid says nothing: as pid 1 of its
// namespace init has none).
func (l *launch) switchUserKeepDeathSignal(p *specs.Process) error {
	var sig int32 // PR_GET_PDEATHSIG writes an int
	_ = unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0)
	if err := switchUser(p); err != nil {
		return err
	}
	if sig == 0 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil && l.filter == nil {
		return fmt.Errorf("set parent death signal again: %w", err)
	}
	if l.toBoot != nil && peerGone(l.toBoot) {
		return errors.New("moat boot exited while the container started")
	}
	return nil
}

// peerGone reports whether the other end of c has closed.
func peerGone(c *ipc.Conn) bool {
	rc, err := c.File().SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLRDHUP) != 0
	})
	return gone
}
