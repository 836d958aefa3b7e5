package boot

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/network"
)

// planNetwork takes the sandbox network from the plan (the CLI decided it
// and matched the spec's namespaces to the mode) and parses its settings.
func (b *boot) planNetwork(cfg *config.Config) error {
	if b.plan.Network == nil {
		return nil
	}
	st, err := cfg.NetworkSettings()
	if err != nil {
		return err
	}
	st.Config.DNSServers = nil
	for _, s := range b.plan.Network.DNSServers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return fmt.Errorf("plan: dns server %q: %w", s, err)
		}
		st.Config.DNSServers = append(st.Config.DNSServers, ap)
	}
	st.Config.Log = func(format string, args ...any) {
		b.log.Warn("sandbox network: " + fmt.Sprintf(format, args...))
	}
	b.netSettings = st
	return nil
}

// startNetwork creates the TAP device in the container's network namespace,
// runs the user-mode network on it and publishes the configured ports. Boot
// creates the device itself, from a thread that joined init's namespace: it
// is outside the container's cgroup, whose device rules need not allow
// /dev/net/tun, and the TAP fd is never in a container process.
// Precondition: init is in its new network namespace (its pidfd pins it: a
// dead init makes setns fail, never lands in another process's namespace).
func (b *boot) startNetwork() error {
	if b.netSettings == nil {
		return nil
	}
	mtu, addr, gw := b.netSettings.Config.TapAddressing()
	tap, err := network.CreateTapIn(b.init.pidfd, network.DefaultTapName, mtu, addr, gw)
	if err != nil {
		return fmt.Errorf("sandbox network: %w", err)
	}
	network.LimitSupervisorMemory()
	sb, err := network.Start(tap, b.netSettings.Config)
	if err != nil {
		return err
	}
	b.net = sb
	for _, f := range b.netSettings.Forwards {
		if err := sb.AddForward(f); err != nil {
			return fmt.Errorf("publish %s: %w", f, err)
		}
	}
	return nil
}

// stopNetwork closes the user-mode network and its published ports (Close
// is idempotent; a late `moat port` request gets an error from it).
func (b *boot) stopNetwork() {
	if b.net == nil {
		return
	}
	if err := b.net.Close(); err != nil {
		b.log.Warn("close the sandbox network", "error", err)
	}
}

// ports serves `moat port`: add or remove a forward, or list them.
func (b *boot) ports(req ipc.ClientPortRequested) (ipc.Message, error) {
	if b.net == nil {
		return nil, errors.New("the container has no sandbox network (--network=sandbox)")
	}
	switch req.Op {
	case "ls":
	case "add", "rm":
		f, err := network.ParsePublish(req.Publish)
		if err != nil {
			return nil, err
		}
		if req.Op == "add" {
			err = b.net.AddForward(f)
		} else {
			err = b.net.RemoveForward(f)
		}
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown port operation %q", req.Op)
	}
	var out []string
	for _, f := range b.net.Forwards() {
		out = append(out, f.String())
	}
	return ipc.BootPorts{Forwards: out}, nil
}
