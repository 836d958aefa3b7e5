package spec

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Namespaces moat can create or join, with the clone flag of each.
var knownNamespaces = map[specs.LinuxNamespaceType]bool{
	specs.PIDNamespace: true, specs.NetworkNamespace: true, specs.MountNamespace: true,
	specs.IPCNamespace: true, specs.UTSNamespace: true, specs.UserNamespace: true,
	specs.CgroupNamespace: true, specs.TimeNamespace: true,
}

func (b *Bundle) validateNamespaces() error {
	seen := map[specs.LinuxNamespaceType]bool{}
	l := b.Spec.Linux
	for i, ns := range l.Namespaces {
		f := fmt.Sprintf("linux.namespaces[%d]", i)
		if !knownNamespaces[ns.Type] {
			return invalid(f+".type", "unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return invalid(f+".type", "namespace %q given twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path == "" {
			continue
		}
		if ns.Type == specs.UserNamespace {
			return invalid(f+".path", "joining an existing user namespace is not supported (it needs a single-threaded process; moat has no cgo)")
		}
		if !filepath.IsAbs(ns.Path) {
			return invalid(f+".path", "%q is not an absolute path", ns.Path)
		}
		if _, err := os.Stat(ns.Path); err != nil {
			return invalid(f+".path", "%v", err)
		}
	}
	if !seen[specs.MountNamespace] {
		return invalid("linux.namespaces", "a mount namespace is required")
	}
	if (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) && !seen[specs.UserNamespace] {
		return invalid("linux.uidMappings", "id mappings need a user namespace")
	}
	if len(l.TimeOffsets) > 0 && !seen[specs.TimeNamespace] {
		return invalid("linux.timeOffsets", "time offsets need a time namespace")
	}
	if seen[specs.UserNamespace] && len(l.UIDMappings) == 0 {
		return invalid("linux.uidMappings", "a new user namespace needs uid mappings")
	}
	if b.Spec.Hostname != "" && !seen[specs.UTSNamespace] {
		return invalid("hostname", "setting the hostname needs a new uts namespace")
	}
	if b.Spec.Domainname != "" && !seen[specs.UTSNamespace] {
		return invalid("domainname", "setting the domainname needs a new uts namespace")
	}
	return nil
}

// HasNamespace reports whether s creates or joins namespace t.
func HasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// NewNamespace reports whether s creates (rather than joins) namespace t.
func NewNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path == ""
		}
	}
	return false
}

func (b *Bundle) validateMounts() error {
	for i, m := range b.Spec.Mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		if m.Destination == "" {
			return invalid(f+".destination", "missing")
		}
		if !filepath.IsAbs(m.Destination) {
			return invalid(f+".destination", "%q is not an absolute path", m.Destination)
		}
		if IsBind(m) {
			if m.Source == "" {
				return invalid(f+".source", "a bind mount needs a source")
			}
		} else if err := checkFilesystem(m.Type); err != nil {
			return invalid(f+".type", "%v", err)
		}
		mo, err := ParseMountOptions(m.Options)
		if err != nil {
			return invalid(f+".options", "%v", err)
		}
		if IsBind(m) {
			// Resolved against the bundle once, here: the effective spec
			// (the plan's) names absolute sources to every later process.
			b.Spec.Mounts[i].Source = b.sourcePath(m.Source)
			// An optional bind mount's source may be gone: it is left out.
			if _, err := os.Lstat(b.Spec.Mounts[i].Source); err != nil && !(mo.Optional && errors.Is(err, os.ErrNotExist)) {
				return invalid(f+".source", "%v", err)
			}
		}
	}
	return nil
}

// sourcePath resolves a bind source relative to the bundle directory.
func (b *Bundle) sourcePath(src string) string {
	if filepath.IsAbs(src) {
		return src
	}
	return filepath.Join(b.Dir, src)
}

// IsBind reports whether m is a bind mount: type "bind", or a "bind"/"rbind"
// option with any type.
func IsBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

var (
	filesystemsOnce sync.Once
	filesystems     map[string]bool
)

// checkFilesystem accepts a type the kernel knows (/proc/filesystems).
func checkFilesystem(t string) error {
	if t == "" {
		return fmt.Errorf("missing mount type")
	}
	filesystemsOnce.Do(func() {
		filesystems = map[string]bool{}
		f, err := os.Open("/proc/filesystems")
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 0 {
				filesystems[fields[len(fields)-1]] = true
			}
		}
	})
	if len(filesystems) == 0 || filesystems[t] {
		return nil
	}
	// Modules load on demand: accept what the kernel could load, refuse
	// what is plainly not a filesystem name.
	if _, err := os.Stat("/sys/fs/" + t); err == nil {
		return nil
	}
	if strings.HasPrefix(t, "fuse.") {
		return nil
	}
	return fmt.Errorf("unknown mount type %q (not in /proc/filesystems)", t)
}

func (b *Bundle) validateLinux() error {
	l := b.Spec.Linux
	for i, d := range l.Devices {
		f := fmt.Sprintf("linux.devices[%d]", i)
		if !filepath.IsAbs(d.Path) || !strings.HasPrefix(filepath.Clean(d.Path), "/dev/") {
			return invalid(f+".path", "%q is not an absolute path under /dev", d.Path)
		}
		switch d.Type {
		case "c", "b", "u", "p":
		default:
			return invalid(f+".type", "unknown device type %q (want c, b, u or p)", d.Type)
		}
	}
	if err := ValidateSysctl(b.Spec); err != nil {
		return err
	}
	switch l.RootfsPropagation {
	case "", "shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable":
	default:
		return invalid("linux.rootfsPropagation", "unknown propagation %q", l.RootfsPropagation)
	}
	for field, paths := range map[string][]string{"linux.maskedPaths": l.MaskedPaths, "linux.readonlyPaths": l.ReadonlyPaths} {
		for i, p := range paths {
			if !filepath.IsAbs(p) {
				return invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not an absolute path", p)
			}
		}
	}
	if l.Personality != nil {
		switch l.Personality.Domain {
		case specs.PerLinux, specs.PerLinux32:
		default:
			return invalid("linux.personality.domain", "unknown domain %q", l.Personality.Domain)
		}
	}
	return b.checkUnsupported()
}

// checkUnsupported refuses what moat cannot honour and warns about fields it
// ignores. Policy: a resource or isolation guarantee the user asked for and
// moat cannot give is an error (intelRdt, netDevices, memoryPolicy); a label
// for a security module this host does not run is ignored with a warning,
// as runc does.
func (b *Bundle) checkUnsupported() error {
	l := b.Spec.Linux
	if l.IntelRdt != nil {
		return invalid("linux.intelRdt", "Intel RDT (resctrl) is not supported by moat")
	}
	if len(l.NetDevices) > 0 {
		return invalid("linux.netDevices", "moving host network devices is not supported by moat")
	}
	if l.MemoryPolicy != nil {
		return invalid("linux.memoryPolicy", "NUMA memory policy is not supported by moat")
	}
	if l.MountLabel != "" && !SELinuxEnabled() {
		b.warn("linux.mountLabel ignored: SELinux is not enabled on this host")
	} else if l.MountLabel != "" {
		b.warn("linux.mountLabel ignored: moat does not label mounts")
	}
	p := b.Spec.Process
	if p.ApparmorProfile != "" && !AppArmorEnabled() {
		b.warn("process.apparmorProfile %q ignored: AppArmor is not enabled on this host", p.ApparmorProfile)
	}
	if p.SelinuxLabel != "" && !SELinuxEnabled() {
		b.warn("process.selinuxLabel ignored: SELinux is not enabled on this host")
	}
	return nil
}

// AppArmorEnabled reports whether the host enforces AppArmor.
func AppArmorEnabled() bool {
	data, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(data), "Y")
}

// SELinuxEnabled reports whether SELinux is active on the host.
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// ValidateSysctl allows only namespaced sysctls, and only when the namespace
// they belong to is the container's own (as runc does). Callers that change
// a validated spec's namespaces check again with it.
func ValidateSysctl(s *specs.Spec) error {
	for key := range s.Linux.Sysctl {
		f := "linux.sysctl." + key
		if strings.Contains(key, "/") || strings.Contains(key, "..") {
			return invalid(f, "malformed key")
		}
		switch {
		case strings.HasPrefix(key, "kernel.msg"), strings.HasPrefix(key, "kernel.sem"),
			strings.HasPrefix(key, "kernel.shm"), strings.HasPrefix(key, "fs.mqueue."):
			if !HasNamespace(s, specs.IPCNamespace) {
				return invalid(f, "needs an ipc namespace")
			}
		case strings.HasPrefix(key, "net."):
			if !HasNamespace(s, specs.NetworkNamespace) {
				return invalid(f, "needs a network namespace (without one it would change the host)")
			}
		case key == "kernel.hostname", key == "kernel.domainname":
			if !HasNamespace(s, specs.UTSNamespace) {
				return invalid(f, "needs a uts namespace")
			}
		default:
			return invalid(f, "not a namespaced sysctl: it would change the host")
		}
	}
	return nil
}

// kernelFS are filesystems that are interfaces to the kernel, not host
// files: a bind mount of one of them stays a bind mount (made by init), as
// proxying it through the gofer would break it (magic links, per-reader
// contents) and serve it with the gofer's rights.
var kernelFS = map[int64]bool{
	unix.PROC_SUPER_MAGIC: true, unix.SYSFS_MAGIC: true, unix.DEVPTS_SUPER_MAGIC: true,
	unix.CGROUP_SUPER_MAGIC: true, unix.CGROUP2_SUPER_MAGIC: true, mqueueMagic: true,
	unix.BPF_FS_MAGIC: true, unix.DEBUGFS_MAGIC: true, unix.TRACEFS_MAGIC: true,
	unix.SECURITYFS_MAGIC: true, configfsMagic: true, unix.PSTOREFS_MAGIC: true,
	unix.EFIVARFS_MAGIC: true, unix.BINFMTFS_MAGIC: true, fusectlMagic: true,
	unix.NSFS_MAGIC: true,
}

// Magic numbers x/sys/unix does not name (linux/magic.h).
const (
	mqueueMagic   = 0x19800202
	configfsMagic = 0x62656570
	fusectlMagic  = 0x65735543
)

// BindSource is what the CLI finds at a bind mount's source: the one look
// at the host file, whose result the plan carries down. (The gofer opens
// the source itself and checks the same again on what it opened.)
type BindSource struct {
	// Dir: the source is a directory (symlinks followed, as the bind will).
	Dir bool
	// NonDir: the source exists and is something else (its mount point
	// is then a file).
	NonDir bool
	// Served: a directory on an ordinary file system, which the gofer
	// serves. Kernel interfaces (procfs, sysfs, cgroup, ...) and device
	// nodes, sockets and FIFOs are bound by init directly. So, for now,
	// are single files (/etc/hosts, /etc/resolv.conf): the file server has
	// no file-rooted trees yet, and a tree holding the file as a mount
	// point would be a mount crossing, which it refuses by design.
	Served bool
}

// StatBindSource looks at a bind mount's source once. A source that cannot
// be stat'ed is neither (init reports the error when it opens it, or
// leaves an optional one out).
// Precondition: src is absolute.
func StatBindSource(src string) BindSource {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return BindSource{}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return BindSource{NonDir: true}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(src, &fs); err != nil {
		return BindSource{Dir: true}
	}
	return BindSource{Dir: true, Served: !IsKernelFS(fs.Type)}
}

// IsKernelFS reports whether a statfs f_type is a kernel interface, never
// served by the gofer.
func IsKernelFS(magic int64) bool { return kernelFS[magic] }
