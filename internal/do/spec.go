package do

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/spec"
)

// Plan is a generated sandbox: the spec, and what the user should be told.
type Plan struct {
	Spec *specs.Spec
	// Unhidden are the default hides --no-default-hides left visible.
	Unhidden []string
	limits   limits
	network  string
	changes  bool
	format   string
	keep     string   // --keep-changes DIR, absolute
	roots    []string // what a kept change set may be applied to
	// profile is the seccomp profile (JSON; empty: none) handed to the
	// reaper when the command runs in a nested user namespace; nil else.
	profile []byte
}

// defaultHides are the paths below $HOME hidden unless --no-default-hides.
var defaultHides = []string{".ssh", ".gnupg", ".aws", ".config/gcloud", ".docker", ".netrc", ".kube"}

// rootCaps is what uid 0 inside keeps (Docker's default set): never
// CAP_SYS_ADMIN, CAP_SYS_PTRACE or CAP_NET_ADMIN.
var rootCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Generate builds the sandbox's spec.
// Precondition: o.Args is not empty and o.Cwd, if set, is absolute.
func Generate(o *Options, h *Host) (*Plan, error) {
	lim, err := o.limits()
	if err != nil {
		return nil, err
	}
	p := &Plan{limits: lim, network: o.Network, changes: o.Changes, format: o.Format}
	if p.network == "" {
		p.network = NetNone
	}
	switch p.network {
	case NetNone, NetSandbox, NetHost:
	default:
		return nil, inputErr("--network %q: want none, sandbox or host", o.Network)
	}
	if p.network != NetSandbox && (len(o.Egress) > 0 || len(o.EgressDomain) > 0 || len(o.Publish) > 0) {
		return nil, inputErr("--egress, --egress-domain and --publish need --network=sandbox")
	}
	cwd := o.Cwd
	if cwd == "" {
		if cwd, err = os.Getwd(); err != nil {
			return nil, inputErr("the current directory: %v (give --cwd)", err)
		}
	}
	if !filepath.IsAbs(cwd) {
		return nil, inputErr("--cwd %q: not an absolute path", cwd)
	}
	if err := p.planChanges(o, cwd); err != nil {
		return nil, err
	}
	files, err := fileMounts(o, h, cwd)
	if err != nil {
		return nil, err
	}
	p.Unhidden = files.unhidden
	s := baseSpec(o, h, cwd)
	s.Mounts = append(s.Mounts, files.mounts...)
	if o.Tty {
		s.Process.Env = setEnv(s.Process.Env, "TERM", envOr(o.Env, "TERM", "xterm"))
	}
	nested := setIdentity(s, o, h)
	setLimits(s, lim)
	if s.Linux.Seccomp, err = seccompFor(o.Seccomp); err != nil {
		return nil, err
	}
	if p.network == NetHost {
		s.Linux.Namespaces = withoutNS(s.Linux.Namespaces, specs.NetworkNamespace)
		s.Hostname = ""
		s.Linux.Namespaces = withoutNS(s.Linux.Namespaces, specs.UTSNamespace)
	}
	// The reaper's descriptors from 3 on: the change list, the profile.
	var flags []string
	fd := 3
	if p.changes || p.keep != "" {
		s.Annotations = map[string]string{spec.AnnotationUpper: upperPath}
		flags = append(flags, fmt.Sprintf("--changes-fd=%d", fd), "--upper="+upperPath)
		if p.keep != "" {
			flags = append(flags, "--content")
		}
		fd++
	}
	if nested {
		// The reaper makes the command's user namespace, which the profile
		// forbids: the command's second stage installs it instead.
		p.profile = []byte{}
		if s.Linux.Seccomp != nil {
			if p.profile, err = json.Marshal(s.Linux.Seccomp); err != nil {
				return nil, err
			}
		}
		s.Linux.Seccomp = nil
		flags = append(flags, fmt.Sprintf("--uid=%d", h.UID), fmt.Sprintf("--gid=%d", h.GID), fmt.Sprintf("--seccomp-fd=%d", fd))
		fd++
	}
	// Last: the pipe the reaper says it handles signals on (Run's ready).
	flags = append(flags, fmt.Sprintf("--ready-fd=%d", fd))
	s.Process.Args = append(append(s.Process.Args[:2:2], flags...), s.Process.Args[2:]...)
	p.Spec = s
	return p, nil
}

// upperPath is where the sandbox shows its upper layer to the reaper.
const upperPath = "/dev/.moat-upper"

// planChanges checks --changes, --format and --keep-changes.
func (p *Plan) planChanges(o *Options, cwd string) error {
	switch {
	case o.Format != "" && o.Format != "text" && o.Format != "json":
		return inputErr("--format %q: want text or json", o.Format)
	case o.Format != "" && !o.Changes:
		return inputErr("--format is the format of --changes")
	}
	if o.KeepChanges == "" {
		return nil
	}
	keep := o.KeepChanges
	if !filepath.IsAbs(keep) {
		keep = filepath.Join(cwd, keep)
	}
	if ents, err := os.ReadDir(keep); err == nil && len(ents) > 0 {
		return inputErr("--keep-changes %s: not empty", keep)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return inputErr("--keep-changes %s: %v", keep, describe(err))
	}
	keep = filepath.Clean(keep)
	rw, err := absPaths("rw", o.RW, cwd)
	if err != nil {
		return err
	}
	if under(keep, rw) {
		// The command could rewrite the kept set (or plant symlinks in it)
		// through its --rw tree before moat apply reads it.
		return inputErr("--keep-changes %s: inside a --rw path, where the command could change it", keep)
	}
	p.keep, p.roots = keep, []string{cwd}
	return nil
}

// ReaperPath is where moat's executable is bound read-only for the reaper
// (its host path may be hidden, or under /tmp, which the sandbox replaces).
const ReaperPath = "/dev/.moat-do-init"

// baseSpec is everything but the user's files, identity and limits.
func baseSpec(o *Options, h *Host, cwd string) *specs.Spec {
	args := append([]string{ReaperPath, "do-init", "--"}, o.Args...)
	env := o.Env
	if envOr(env, "PATH", "") == "" {
		env = setEnv(env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "/"},
		Hostname: h.Hostname,
		Process: &specs.Process{
			Terminal:        o.Tty,
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: ReaperPath, Type: "bind", Source: o.Exe, Options: []string{"bind", "ro", "nosuid", "nodev"}},
			{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			Namespaces:    spec.DefaultNamespaces(),
			MaskedPaths:   spec.DefaultMaskedPaths(),
			ReadonlyPaths: spec.DefaultReadonlyPaths(),
		},
	}
}

// setIdentity sets the process's uid and gid inside. Real root stays uid
// 0. For an unprivileged caller, boot's user namespace maps its root to
// the caller (boot must be that root to regain its capabilities after the
// maps); the reaper runs as that root and, unless --root, runs the command
// in a nested user namespace as the caller's own uid and gid (mapped to
// that root, so still the caller outside): nested is then true.
func setIdentity(s *specs.Spec, o *Options, h *Host) (nested bool) {
	uid, gid := uint32(h.UID), uint32(h.GID)
	if h.UID != 0 {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		uid, gid = 0, 0
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.UID), Size: 1}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(h.GID), Size: 1}}
	}
	s.Process.User = specs.User{UID: uid, GID: gid}
	if uid == 0 {
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: rootCaps, Effective: rootCaps, Permitted: rootCaps}
	}
	return h.UID != 0 && !o.Root
}

// reaperTasks is what --pids adds for the reaper (a Go program: its
// threads count as tasks), so that N is what the command may start.
const reaperTasks = 16

func setLimits(s *specs.Spec, l limits) {
	r := &specs.LinuxResources{}
	if l.memory > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &l.memory}
	}
	if l.quota > 0 {
		period := uint64(cpuPeriod)
		r.CPU = &specs.LinuxCPU{Quota: &l.quota, Period: &period}
	}
	if l.pids > 0 {
		pids := l.pids + reaperTasks
		r.Pids = &specs.LinuxPids{Limit: &pids}
	}
	if r.Memory != nil || r.CPU != nil || r.Pids != nil {
		s.Linux.Resources = r
	}
}

// files are the mounts that make up the user's view of the host.
type files struct {
	mounts   []specs.Mount
	unhidden []string
}

// fileMounts builds the submounts, --rw, --ro and --hide, and the default
// hides; a parent is mounted before what lies below it.
func fileMounts(o *Options, h *Host, cwd string) (*files, error) {
	rw, err := absPaths("rw", o.RW, cwd)
	if err != nil {
		return nil, err
	}
	ro, err := absPaths("ro", o.RO, cwd)
	if err != nil {
		return nil, err
	}
	hide, err := absPaths("hide", o.Hide, cwd)
	if err != nil {
		return nil, err
	}
	kind := map[string]string{}
	for _, set := range []struct {
		flag  string
		paths []string
	}{{"rw", rw}, {"ro", ro}, {"hide", hide}} {
		for _, p := range set.paths {
			if k, dup := kind[p]; dup && k != set.flag {
				return nil, inputErr("%s is given to both --%s and --%s", p, k, set.flag)
			}
			if _, err := os.Lstat(p); err != nil {
				return nil, inputErr("--%s %s: %v", set.flag, p, describe(err))
			}
			if under(p, []string{"/proc", "/sys", "/dev"}) {
				return nil, inputErr("--%s %s: the sandbox has its own /proc, /sys and /dev", set.flag, p)
			}
			kind[p] = set.flag
		}
	}
	f := &files{}
	explicit := append(append([]string{}, rw...), ro...)
	for _, p := range defaults(h) {
		if !reachable(p) || kind[p] != "" || under(p, explicit) || under(p, []string{"/tmp", "/proc", "/sys", "/dev"}) {
			continue // absent, closed to the caller anyway, asked for explicitly, or not the host's
		}
		if o.NoDefaultHides {
			f.unhidden = append(f.unhidden, p)
			continue
		}
		kind[p] = "hide"
	}
	for _, p := range h.Submounts {
		if kind[p] == "" {
			kind[p] = "sub"
		}
	}
	paths := make([]string, 0, len(kind))
	for p := range kind {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool {
		if depth(paths[i]) != depth(paths[j]) {
			return depth(paths[i]) < depth(paths[j])
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		m, err := mountFor(p, kind[p], h, parentOf(p, paths))
		if err != nil {
			return nil, err
		}
		f.mounts = append(f.mounts, m)
	}
	return f, nil
}

// defaults are the paths hidden unless --no-default-hides.
func defaults(h *Host) []string {
	var out []string
	if h.Home != "" && h.Home != "/" {
		for _, d := range defaultHides {
			out = append(out, filepath.Join(h.Home, d))
		}
	}
	out = append(out, h.StateRoots...)
	if ents, err := os.ReadDir("/run/user"); err == nil {
		for _, e := range ents {
			out = append(out, filepath.Join("/run/user", e.Name()))
		}
	}
	return out
}

// parentOf reports whether a path in paths lies below p.
func parentOf(p string, paths []string) bool {
	for _, q := range paths {
		if strings.HasPrefix(q, p+"/") {
			return true
		}
	}
	return false
}

// mountFor is the spec mount for one path. A hidden directory is an empty
// read-only tmpfs, writable (a throwaway) only when paths below it are
// mounted: init makes their mount points in it.
func mountFor(p, kind string, h *Host, parent bool) (specs.Mount, error) {
	st, err := os.Stat(p)
	isDir := err == nil && st.IsDir()
	switch kind {
	case "rw":
		return specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"rbind", "rw", "nosuid", "nodev"}}, nil
	case "ro":
		return specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"rbind", "ro", "nosuid", "nodev"}}, nil
	case "sub":
		// The host's own mounts come and go (a container runtime's, say):
		// one gone before the sandbox mounts it is left out.
		return specs.Mount{Destination: p, Type: "bind", Source: p, Options: []string{"rbind", "ro", "nosuid", "nodev", spec.OptionalMount}}, nil
	}
	if isDir {
		opts := []string{"nosuid", "nodev", "noexec", "size=64k", "mode=0755"}
		if !parent {
			opts = append(opts, "ro")
		}
		return specs.Mount{Destination: p, Type: "tmpfs", Source: "tmpfs", Options: opts}, nil
	}
	empty, err := h.EmptyFile()
	if err != nil {
		return specs.Mount{}, fmt.Errorf("hide %s: %w", p, err)
	}
	return specs.Mount{Destination: p, Type: "bind", Source: empty, Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}, nil
}

// reachable reports whether the caller can open p at all (a directory it
// may search, a file it may read): a default hide of anything else hides
// nothing.
func reachable(p string) bool {
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	mode := uint32(unix.R_OK)
	if st.IsDir() {
		mode = unix.X_OK
	}
	return unix.Faccessat(unix.AT_FDCWD, p, mode, unix.AT_EACCESS) == nil
}

func describe(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func withoutNS(in []specs.LinuxNamespace, t specs.LinuxNamespaceType) []specs.LinuxNamespace {
	var out []specs.LinuxNamespace
	for _, ns := range in {
		if ns.Type != t {
			out = append(out, ns)
		}
	}
	return out
}

func envOr(env []string, name, def string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, name+"="); ok {
			return v
		}
	}
	return def
}

func setEnv(env []string, name, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return append(out, name+"="+value)
}
