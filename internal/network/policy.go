package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// PortRange is an inclusive range of ports.
type PortRange struct{ First, Last uint16 }

// Rule allows or denies destinations in Prefix, on Ports (all ports, and
// ICMP, when Ports is empty; a rule with ports never matches ICMP).
type Rule struct {
	Allow  bool
	Prefix netip.Prefix
	Ports  []PortRange
}

// Policy is the container's egress policy. It is evaluated per new outbound
// flow (TCP connection, UDP flow, ICMP echo), never on established ones:
//
//  1. Always blocked, whatever the rules: 169.254.0.0/16 (cloud metadata and
//     link-local), the other clouds' metadata addresses (168.63.129.16,
//     100.100.100.200, 192.0.0.192, and AWS's, GCP's, Scaleway's and Oracle's
//     IPv6 ones), 0.0.0.0/8, 127.0.0.0/8, multicast and 240.0.0.0/4, and the
//     sandbox subnet itself except the gateway (blockedPrefixes).
//  2. The gateway (other than its DNS service) is the host's 127.0.0.1 and is
//     reachable only with Config.AllowHostLoopback; then only a matching deny
//     rule blocks it.
//  3. Otherwise the first rule whose prefix and ports match decides.
//  4. With no matching rule: if the policy is an allowlist (it has an allow
//     rule or Domains), only addresses that the DNS forwarder resolved for an
//     allowed name, within their TTL (at least a minute), are reachable;
//     otherwise everything is.
//  5. A destination allowed so far that is one of the host's own addresses
//     (any interface's, asked of the kernel at that moment: hostAddrs) is
//     denied unless Config.AllowHostLoopback: a host service listening on
//     0.0.0.0 is no more reachable at eth0's or a bridge's address than at
//     the gateway's. With the flag, those addresses are ordinary
//     destinations, under the rules.
//
// Domains are patterns: "example.org" matches that name only, "*.pypi.org"
// any name below pypi.org (not pypi.org itself). With Domains set, DNS queries
// for other names are answered REFUSED.
//
// The gateway's DNS service relays names to the host's resolvers: a channel
// out of its own. It answers unless the rules close the gateway's port 53
// (dnsDecision): the first rule matching gateway:53 decides (so
// deny=0.0.0.0/0 or deny=10.0.2.2:53 closes it, and allow=10.0.2.2:53 opens
// it under an allowlist); with no matching rule it is open, except under an
// allowlist of rules alone (allow rules, no Domains), where it is closed:
// every query is answered REFUSED. Deny rules alone that spare the gateway
// leave DNS open for every name, as they leave every other destination.
type Policy struct {
	Rules   []Rule
	Domains []string
}

// allowlist reports whether unmatched destinations are denied.
func (p Policy) allowlist() bool {
	if len(p.Domains) > 0 {
		return true
	}
	for _, r := range p.Rules {
		if r.Allow {
			return true
		}
	}
	return false
}

func (p Policy) validate() error {
	for _, r := range p.Rules {
		if !r.Prefix.IsValid() {
			return errors.New("egress rule without a prefix")
		}
		for _, pr := range r.Ports {
			if pr.First == 0 || pr.First > pr.Last {
				return fmt.Errorf("egress rule %v: bad port range %d-%d", r.Prefix, pr.First, pr.Last)
			}
		}
	}
	for _, d := range p.Domains {
		if _, err := normalizeDomainPattern(d); err != nil {
			return err
		}
	}
	return nil
}

// dnsDecision decides once whether the gateway's DNS service answers (see
// Policy), and why not.
func (p Policy) dnsDecision(gw netip.Addr) (bool, string) {
	for _, r := range p.Rules {
		if r.matches(gw, 53, false) {
			if r.Allow {
				return true, ""
			}
			return false, "deny rule " + r.Prefix.String()
		}
	}
	if p.allowlist() && len(p.Domains) == 0 {
		return false, fmt.Sprintf("an egress allowlist without --egress-domain; allow=%v:53 opens it", gw)
	}
	return true, ""
}

func (r Rule) matches(dst netip.Addr, port uint16, icmp bool) bool {
	if !r.Prefix.Contains(dst) {
		return false
	}
	if len(r.Ports) == 0 {
		return true
	}
	if icmp {
		return false
	}
	for _, pr := range r.Ports {
		if port >= pr.First && port <= pr.Last {
			return true
		}
	}
	return false
}

// ParseEgress parses the --egress flag value: a comma-separated list of
// allow=CIDR[:ports] and deny=CIDR[:ports]. CIDR may be a bare address (a
// single host); IPv6 with ports is written [2001:db8::/32]:443. Ports are a
// port or a range (8000-8100); further ports of the same rule follow as bare
// list items: "allow=0.0.0.0/0:80,443,deny=10.0.0.0/8".
func ParseEgress(s string) ([]Rule, error) {
	var rules []Rule
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		verb, val, ok := strings.Cut(item, "=")
		if !ok {
			pr, err := parsePortRange(item)
			if err != nil || len(rules) == 0 || len(rules[len(rules)-1].Ports) == 0 {
				return nil, fmt.Errorf("egress %q: item %q is not allow=CIDR[:ports] or deny=CIDR[:ports]", s, item)
			}
			last := &rules[len(rules)-1]
			last.Ports = append(last.Ports, pr)
			continue
		}
		var r Rule
		switch strings.ToLower(verb) {
		case "allow":
			r.Allow = true
		case "deny":
		default:
			return nil, fmt.Errorf("egress %q: %q is not allow or deny", s, verb)
		}
		if err := parseRuleTarget(&r, val); err != nil {
			return nil, fmt.Errorf("egress %q: %w", s, err)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRuleTarget(r *Rule, val string) error {
	cidr, ports := val, ""
	if strings.HasPrefix(val, "[") {
		end := strings.IndexByte(val, ']')
		if end < 0 {
			return fmt.Errorf("%q: missing ]", val)
		}
		cidr, ports = val[1:end], strings.TrimPrefix(val[end+1:], ":")
	} else if strings.Count(val, ":") == 1 {
		cidr, ports, _ = strings.Cut(val, ":")
	}
	p, err := parsePrefixOrAddr(cidr)
	if err != nil {
		return err
	}
	r.Prefix = p
	if ports != "" {
		pr, err := parsePortRange(ports)
		if err != nil {
			return err
		}
		r.Ports = []PortRange{pr}
	}
	return nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad address %q: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortRange(s string) (PortRange, error) {
	a, b, isRange := strings.Cut(s, "-")
	first, err := parsePort(a, false)
	if err != nil {
		return PortRange{}, err
	}
	last := first
	if isRange {
		if last, err = parsePort(b, false); err != nil {
			return PortRange{}, err
		}
	}
	if first > last {
		return PortRange{}, fmt.Errorf("bad port range %q", s)
	}
	return PortRange{first, last}, nil
}

// ParseEgressDomains parses the --egress-domain flag value:
// "allow=example.org,*.pypi.org" (the allow= prefix is optional on every item).
func ParseEgressDomains(s string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if v, ok := strings.CutPrefix(item, "allow="); ok {
			item = v
		}
		if item == "" {
			continue
		}
		d, err := normalizeDomainPattern(item)
		if err != nil {
			return nil, fmt.Errorf("egress-domain %q: %w", s, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func normalizeDomainPattern(p string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(p), ".")
	rest := strings.TrimPrefix(d, "*.")
	if rest == "" || len(d) > 253 {
		return "", fmt.Errorf("bad domain pattern %q", p)
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad domain pattern %q", p)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad domain pattern %q: %q not allowed (a '*.' prefix is the only wildcard)", p, c)
			}
		}
	}
	return d, nil
}

// domainMatch reports whether name (lower case, no trailing dot) matches one
// of the normalized patterns.
func domainMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if base, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(name, "."+base) {
				return true
			}
		} else if name == p {
			return true
		}
	}
	return false
}

// blockedPrefixes are closed whatever the rules: link-local and cloud
// metadata services (instance credentials), this-network, loopback,
// multicast and reserved ranges. The sandbox network is IPv4-only, so the
// IPv6 entries are a second lock.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"), // link-local: AWS, GCP, Azure, OpenStack... metadata at .169.254
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("168.63.129.16/32"),   // Azure WireServer (and its DNS)
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("192.0.0.192/32"),     // Oracle Cloud Classic metadata
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("ff00::/8"),
	netip.MustParsePrefix("fd00:ec2::254/128"),      // AWS IMDS over IPv6
	netip.MustParsePrefix("fd00:ec2::23/128"),       // AWS EKS Pod Identity Agent
	netip.MustParsePrefix("fd20:ce::254/128"),       // GCP metadata over IPv6
	netip.MustParsePrefix("fd00:42::42/128"),        // Scaleway metadata over IPv6
	netip.MustParsePrefix("fd00:c1::a9fe:a9fe/128"), // Oracle OCI metadata over IPv6
}

const (
	minResolvedTTL = time.Minute
	maxResolvedTTL = 24 * time.Hour
	maxResolved    = 1 << 16 // addresses remembered for the domain allowlist
	maxDenyLogged  = 4096    // distinct denied destinations logged
)

// egress applies a Policy. Safe for concurrent use.
type egress struct {
	pol       Policy
	gw        netip.Addr
	subnet    netip.Prefix
	allowLoop bool
	log       func(string, ...any)
	host      hostAddrs
	dnsOpen   bool   // the gateway's DNS answers (Policy.dnsDecision)
	dnsWhy    string // why not

	mu       sync.Mutex
	resolved map[netip.Addr]time.Time // address -> expiry
	logged   map[string]struct{}
}

func newEgress(cfg *Config) *egress {
	pol := cfg.Egress
	pol.Domains = nil
	for _, d := range cfg.Egress.Domains {
		n, _ := normalizeDomainPattern(d) // validated by Config.validate
		pol.Domains = append(pol.Domains, n)
	}
	e := &egress{
		pol: pol, gw: cfg.Gateway, subnet: cfg.Subnet, allowLoop: cfg.AllowHostLoopback,
		log: cfg.Log, resolved: map[netip.Addr]time.Time{}, logged: map[string]struct{}{},
	}
	e.dnsOpen, e.dnsWhy = pol.dnsDecision(cfg.Gateway)
	return e
}

// check decides a new flow to dst:port ("tcp", "udp" or "icmp"), logging the
// first denial of each destination.
func (e *egress) check(proto string, dst netip.Addr, port uint16) bool {
	ok, why := e.decide(proto, dst, port)
	if !ok {
		e.logDenial(proto, dst, port, why)
	}
	return ok
}

// close releases the host-address lookup's socket.
func (e *egress) close() { e.host.close() }

func (e *egress) decide(proto string, dst netip.Addr, port uint16) (bool, string) {
	ok, why := e.decideRules(proto, dst, port)
	if !ok || e.allowLoop || dst.Unmap() == e.gw {
		return ok, why
	}
	local, err := e.host.isHost(dst.Unmap())
	if err != nil {
		return false, fmt.Sprintf("cannot tell whether it is the host's: %v", err)
	}
	if local {
		return false, "an address of the host, closed as its loopback (--allow-host-loopback)"
	}
	return true, ""
}

// decideRules is decide without the host-address check (steps 1-4).
func (e *egress) decideRules(proto string, dst netip.Addr, port uint16) (bool, string) {
	icmp := proto == "icmp"
	dst = dst.Unmap()
	for _, p := range blockedPrefixes {
		if p.Contains(dst) {
			return false, "blocked range " + p.String()
		}
	}
	if !dst.Is4() {
		return false, "not IPv4"
	}
	if dst == e.gw {
		if !e.allowLoop {
			return false, "host loopback not allowed (--allow-host-loopback)"
		}
		for _, r := range e.pol.Rules {
			if r.matches(dst, port, icmp) && !r.Allow {
				return false, "deny rule " + r.Prefix.String()
			}
		}
		return true, ""
	}
	if e.subnet.Contains(dst) {
		return false, "sandbox subnet"
	}
	for _, r := range e.pol.Rules {
		if r.matches(dst, port, icmp) {
			if r.Allow {
				return true, ""
			}
			return false, "deny rule " + r.Prefix.String()
		}
	}
	if !e.pol.allowlist() {
		return true, ""
	}
	if len(e.pol.Domains) > 0 && e.wasResolved(dst) {
		return true, ""
	}
	return false, "not in the egress allowlist"
}

func (e *egress) logDenial(proto string, dst netip.Addr, port uint16, why string) {
	key := fmt.Sprintf("%s %v:%d", proto, dst, port)
	if proto == "icmp" {
		key = fmt.Sprintf("icmp %v", dst)
	}
	e.logOnce(key, "egress denied: %s (%s)", key, why)
}

// logOnce logs the first message for key (at most maxDenyLogged keys).
func (e *egress) logOnce(key, format string, args ...any) {
	e.mu.Lock()
	_, seen := e.logged[key]
	full := len(e.logged) >= maxDenyLogged
	if !seen && !full {
		e.logged[key] = struct{}{}
	}
	e.mu.Unlock()
	if !seen && !full {
		e.log(format, args...)
	}
}

// nameAllowed reports whether DNS may resolve name (no domain list: all).
func (e *egress) nameAllowed(name string) bool {
	if len(e.pol.Domains) == 0 {
		return true
	}
	return domainMatch(e.pol.Domains, strings.TrimSuffix(strings.ToLower(name), "."))
}

func (e *egress) learning() bool { return len(e.pol.Domains) > 0 }

// learn records that an allowed name resolved to a for ttl seconds.
func (e *egress) learn(a netip.Addr, ttl uint32) {
	d := time.Duration(ttl) * time.Second
	d = min(max(d, minResolvedTTL), maxResolvedTTL)
	exp := time.Now().Add(d)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.resolved) >= maxResolved {
		now := time.Now()
		for k, v := range e.resolved {
			if v.Before(now) {
				delete(e.resolved, k)
			}
		}
		if len(e.resolved) >= maxResolved {
			return
		}
	}
	if old, ok := e.resolved[a.Unmap()]; !ok || old.Before(exp) {
		e.resolved[a.Unmap()] = exp
	}
}

func (e *egress) wasResolved(a netip.Addr) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.resolved[a]
	return ok && time.Now().Before(exp)
}
