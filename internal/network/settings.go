package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// Settings are the sandbox network's command-line settings, parsed: what
// the supervisor needs to Start the network and publish its ports.
type Settings struct {
	Config   Config
	Forwards []Forward
}

// ParseSettings parses the --publish, --egress, --egress-domain and --dns
// flag values (each repeatable; egress values may also be comma lists) and
// --allow-host-loopback. DNS servers are IP or IP:port ([IPv6]:port).
func ParseSettings(publish, egress, egressDomain, dns []string, allowHostLoopback bool) (*Settings, error) {
	st := &Settings{Config: Config{AllowHostLoopback: allowHostLoopback}}
	for _, p := range publish {
		f, err := ParsePublish(p)
		if err != nil {
			return nil, err
		}
		for _, g := range st.Forwards {
			if g.Proto == f.Proto && g.HostAddr.Port() == f.HostAddr.Port() && f.HostAddr.Port() != 0 &&
				(g.HostAddr.Addr() == f.HostAddr.Addr() || g.HostAddr.Addr().IsUnspecified() || f.HostAddr.Addr().IsUnspecified()) {
				return nil, fmt.Errorf("publish %q: host port %d/%s is published twice", p, f.HostAddr.Port(), f.Proto)
			}
		}
		st.Forwards = append(st.Forwards, f)
	}
	for _, e := range egress {
		rules, err := ParseEgress(e)
		if err != nil {
			return nil, err
		}
		st.Config.Egress.Rules = append(st.Config.Egress.Rules, rules...)
	}
	for _, d := range egressDomain {
		names, err := ParseEgressDomains(d)
		if err != nil {
			return nil, err
		}
		st.Config.Egress.Domains = append(st.Config.Egress.Domains, names...)
	}
	for _, d := range dns {
		ap, err := parseDNSServer(d)
		if err != nil {
			return nil, err
		}
		st.Config.DNSServers = append(st.Config.DNSServers, ap)
	}
	if err := st.Config.Egress.validate(); err != nil {
		return nil, err
	}
	return st, nil
}

func parseDNSServer(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("dns %q: port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("dns %q: want IP or IP:port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}
