package cmd

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/rootless"
	"github.com/moat-sandbox/moat/internal/spec"
)

// Spec is `moat spec`: write a starting config.json, as `runc spec` does,
// with the few choices people make most as flags.
func Spec() *Command {
	bundle := "."
	var o SpecOptions
	return &Command{
		Name: "spec", Args: "[-- COMMAND [ARG...]]", MinArgs: 0, MaxArgs: -1,
		Short: "write a default config.json into the bundle directory",
		Long: "The process is sh, or COMMAND, without a terminal unless --tty (a terminal needs\n" +
			"one on stdin, or a --console-socket).\n\n" +
			"The root is read-only (root.readonly) unless --writable, as in runc's spec: no\n" +
			"process can change the programs and libraries it and the next ones run, and\n" +
			"nothing is lost, since by default moat keeps no write: with --writable, writes\n" +
			"go to moat's memory layer and vanish when the container ends (with the global\n" +
			"--overlay=none, to the bundle's rootfs). Programs that want to write (apt,\n" +
			"package managers) need --writable.",
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &bundle, "bundle directory to write config.json into", "bundle", "b")
			fs.BoolVar(&o.Rootless, "rootless", false, "for an unprivileged user: a user namespace mapping you to root (and your /etc/subuid range to 1..N), no cgroup limits")
			fs.BoolVar(&o.Writable, "writable", false, "a writable root (writes go to the memory layer; default read-only)")
			fs.BoolVar(&o.Tty, "tty", false, "give the process a terminal (process.terminal)")
		},
		Run: func(env *Env, args []string) (int, error) {
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return 1, fmt.Errorf("%s already exists: remove it first", path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return 1, err
			}
			o.Args = args
			data, err := json.MarshalIndent(NewSpec(o), "", "\t")
			if err != nil {
				return 1, err
			}
			return ok(os.WriteFile(path, append(data, '\n'), 0o666))
		},
	}
}

// SpecOptions are `moat spec`'s choices.
type SpecOptions struct {
	Rootless, Writable, Tty bool
	Args                    []string // the process; empty: sh
}

// NewSpec is DefaultSpec with o applied.
func NewSpec(o SpecOptions) *specs.Spec {
	s := DefaultSpec()
	if o.Rootless {
		makeRootless(s)
	}
	s.Root.Readonly = !o.Writable
	s.Process.Terminal = o.Tty
	if len(o.Args) > 0 {
		s.Process.Args = o.Args
	}
	return s
}

// DefaultSpec is the starting configuration: a shell (no terminal) in a
// container with every namespace, a read-only root, the usual mounts and a
// conservative capability set.
func DefaultSpec() *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Args: []string{"sh"},
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "moat",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Namespaces:    spec.DefaultNamespaces(),
			MaskedPaths:   spec.DefaultMaskedPaths(),
			ReadonlyPaths: spec.DefaultReadonlyPaths(),
		},
	}
}

// makeRootless adapts the default spec for an unprivileged user.
func makeRootless(s *specs.Spec) {
	s.Linux.Resources = nil
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	// The maps a spec without a user namespace gets at run time.
	s.Linux.UIDMappings, s.Linux.GIDMappings = rootless.DefaultMaps()
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/sys":
			m = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "/dev/pts":
			m.Options = []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}
		case "/sys/fs/cgroup":
			continue
		}
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
}
