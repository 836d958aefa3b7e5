// Package network gives a container "sandbox" networking in user mode, with
// no privilege on the host (DESIGN.md "Network", research/rootless-net.md).
//
// It is split by side, RootlessKit style:
//
//   - Child side (CreateTap): runs inside the container's network
//     namespace, as root in that namespace's user namespace. It creates tap0,
//     addresses it and routes through the gateway, and returns the TAP fd.
//   - Parent side (Start, Sandbox): runs in the supervisor (`moat net`, a
//     confined process with no capability: package netproc), in the host
//     network namespace (possibly inside a rootless user namespace). It runs
//     a gVisor netstack on the TAP fd, NATs the container's TCP, UDP and
//     ICMP echo to host sockets, serves DNS on the gateway by forwarding raw
//     messages to the host's resolvers, enforces the egress policy, and
//     serves port forwards on host sockets.
//   - Privileged helpers (CreateTapIn, ListenForward): run in `moat boot`,
//     which hands their descriptors to the supervisor.
//
// Helpers with no namespace requirement: ParsePublish, ParseEgress,
// ParseEgressDomains, ResolvConf, Hosts, HostDNSServers.
//
// Addressing defaults follow slirp4netns: subnet 10.0.2.0/24, gateway (and
// DNS) 10.0.2.2, container 10.0.2.100, MTU 65520. IPv4 only.
package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for the sandbox network.
const (
	DefaultTapName = "tap0"
	DefaultMTU     = 65520
)

var (
	DefaultSubnet      = netip.MustParsePrefix("10.0.2.0/24")
	DefaultGateway     = netip.MustParseAddr("10.0.2.2")
	DefaultContainerIP = netip.MustParseAddr("10.0.2.100")
)

// Config describes one sandbox network (parent side). The zero value of each
// field means its default.
type Config struct {
	MTU         int          // default DefaultMTU; must match the TAP's MTU
	Subnet      netip.Prefix // default DefaultSubnet
	Gateway     netip.Addr   // default DefaultGateway; also the DNS server
	ContainerIP netip.Addr   // default DefaultContainerIP

	// AllowHostLoopback maps the gateway address to the host's 127.0.0.1
	// (every host loopback service becomes reachable). Off by default.
	AllowHostLoopback bool

	// Egress restricts outbound connections; the zero Policy allows all
	// except the always-blocked ranges (see Policy).
	Egress Policy

	// DNSServers are the host's resolvers (HostDNSServers parses them).
	// Loopback resolvers such as 127.0.0.53 work: the supervisor is in the
	// host network namespace. Empty means 127.0.0.1:53, as in glibc.
	DNSServers []netip.AddrPort

	// DialTimeout bounds each outbound TCP connect made for the container
	// (default 30s); the container gets a RST when it expires.
	DialTimeout time.Duration
	// UDPIdleTimeout ends a UDP flow (NAT or forward) after this long with
	// no traffic either way (default 60s).
	UDPIdleTimeout time.Duration

	// Log receives one line per notable event (denials, forward errors).
	// Nil discards. Not part of the settings boot hands the net process.
	Log func(format string, args ...any) `json:"-"`
}

func (c *Config) setDefaults() {
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.Gateway.IsValid() {
		c.Gateway = DefaultGateway
	}
	if !c.ContainerIP.IsValid() {
		c.ContainerIP = DefaultContainerIP
	}
	if len(c.DNSServers) == 0 {
		c.DNSServers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 30 * time.Second
	}
	if c.UDPIdleTimeout <= 0 {
		c.UDPIdleTimeout = 60 * time.Second
	}
	if c.Log == nil {
		c.Log = func(string, ...any) {}
	}
}

func (c *Config) validate() error {
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("mtu %d out of range 576-65535", c.MTU)
	}
	if !c.Subnet.Addr().Is4() || !c.Gateway.Is4() || !c.ContainerIP.Is4() {
		return errors.New("only IPv4 subnets are supported")
	}
	c.Subnet = c.Subnet.Masked()
	if !c.Subnet.Contains(c.Gateway) || !c.Subnet.Contains(c.ContainerIP) {
		return fmt.Errorf("gateway %v and container %v must be inside %v", c.Gateway, c.ContainerIP, c.Subnet)
	}
	if c.Gateway == c.ContainerIP {
		return fmt.Errorf("gateway and container share the address %v", c.Gateway)
	}
	return c.Egress.validate()
}

// Proto is a transport protocol of a port forward.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Forward publishes a container port on the host.
type Forward struct {
	Proto         Proto
	HostAddr      netip.AddrPort // port 0 picks a free port (Forwards reports it)
	ContainerPort uint16
}

// withDefaults is f with its protocol defaulted to TCP.
func (f Forward) withDefaults() Forward {
	if f.Proto == "" {
		f.Proto = TCP
	}
	return f
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d/%s", f.HostAddr, f.ContainerPort, f.Proto)
}

// ParsePublish parses `[hostIP:]hostPort:containerPort[/tcp|udp]` (as in
// docker/podman --publish). The host IP defaults to 0.0.0.0 (all IPv4
// addresses); an IPv6 host IP is written in brackets: `[::1]:8080:80`.
func ParsePublish(s string) (Forward, error) {
	f := Forward{Proto: TCP}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch p := Proto(strings.ToLower(rest[i+1:])); p {
		case TCP, UDP:
			f.Proto = p
		default:
			return Forward{}, fmt.Errorf("publish %q: protocol %q is not tcp or udp", s, p)
		}
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return Forward{}, fmt.Errorf("publish %q: want [hostIP:]hostPort:containerPort[/tcp|udp]", s)
	}
	cport, err := parsePort(rest[i+1:], false)
	if err != nil {
		return Forward{}, fmt.Errorf("publish %q: container port: %w", s, err)
	}
	f.ContainerPort = cport
	rest = rest[:i]
	host := netip.IPv4Unspecified()
	if j := strings.LastIndexByte(rest, ':'); j >= 0 {
		h := strings.TrimSuffix(strings.TrimPrefix(rest[:j], "["), "]")
		if host, err = netip.ParseAddr(h); err != nil {
			return Forward{}, fmt.Errorf("publish %q: host IP: %w", s, err)
		}
		rest = rest[j+1:]
	}
	hport, err := parsePort(rest, true)
	if err != nil {
		return Forward{}, fmt.Errorf("publish %q: host port: %w", s, err)
	}
	f.HostAddr = netip.AddrPortFrom(host.Unmap(), hport)
	return f, nil
}

func parsePort(s string, zeroOK bool) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	if n == 0 && !zeroOK {
		return 0, errors.New("port 0")
	}
	return uint16(n), nil
}
