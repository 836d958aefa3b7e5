package network

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/spec"
)

// Network modes (--network).
const (
	ModeAuto    = "auto"    // as the spec says
	ModeNone    = "none"    // a new namespace with loopback only
	ModeHost    = "host"    // the host's namespace: no network isolation
	ModeSandbox = "sandbox" // a new namespace wired to the user-mode network
)

// ApplyMode makes the spec's network namespace match mode and reports
// whether the container gets the sandbox network. A namespace the spec joins
// by path (set up by Podman, CNI or netavark) is kept as it is whatever the
// mode: the caller may want to say so.
//
// Precondition: s is a validated spec (s.Linux is set).
func ApplyMode(s *specs.Spec, mode string) (sandbox bool, err error) {
	idx := -1
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			idx = i
		}
	}
	if idx >= 0 && s.Linux.Namespaces[idx].Path != "" {
		return false, nil
	}
	switch mode {
	case ModeAuto:
		return false, nil
	case ModeNone, ModeSandbox:
		if idx < 0 {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}
		return mode == ModeSandbox, nil
	case ModeHost:
		if idx >= 0 {
			s.Linux.Namespaces = append(s.Linux.Namespaces[:idx:idx], s.Linux.Namespaces[idx+1:]...)
		}
		if err := spec.ValidateSysctl(s); err != nil {
			return false, fmt.Errorf("--network=host: %w", err)
		}
		return false, nil
	}
	return false, fmt.Errorf("network mode %q: want auto, none, host or sandbox", mode)
}

// etcFileMode: readable by every container user. The mounts are read-only:
// the files live on the host (the state directory, often a small tmpfs that
// host services need), so a container must not be able to grow them.
const etcFileMode = 0o644

// AddEtcMounts writes the sandbox container's /etc/resolv.conf, /etc/hosts
// and (with a spec hostname) /etc/hostname into dir, and adds bind mounts of
// them to the spec, except where the spec mounts something there already.
// hostResolv is the host's resolv.conf (its search and options lines are
// kept).
//
// Precondition: dir is the container's private state directory.
func AddEtcMounts(s *specs.Spec, dir string, hostResolv []byte, cfg Config) error {
	cfg.setDefaults()
	files := map[string][]byte{
		"/etc/resolv.conf": ResolvConf(hostResolv, cfg.Gateway),
		"/etc/hosts":       Hosts(s.Hostname, cfg.ContainerIP, cfg.Gateway, cfg.AllowHostLoopback),
	}
	if s.Hostname != "" {
		files["/etc/hostname"] = []byte(s.Hostname + "\n")
	}
	for _, m := range s.Mounts {
		delete(files, path.Clean("/"+m.Destination))
	}
	for _, dst := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"} {
		data, ok := files[dst]
		if !ok {
			continue
		}
		src := filepath.Join(dir, "etc-"+path.Base(dst))
		if err := os.WriteFile(src, data, etcFileMode); err != nil {
			return fmt.Errorf("write %s for the container: %w", dst, err)
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: dst, Type: "bind", Source: src,
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return nil
}

// TapAddressing returns the TAP device's MTU, address (with the subnet's
// length) and gateway for cfg, defaults applied.
func (c Config) TapAddressing() (mtu int, addr netip.Prefix, gw netip.Addr) {
	c.setDefaults()
	return c.MTU, netip.PrefixFrom(c.ContainerIP, c.Subnet.Bits()), c.Gateway
}
