// Package config holds moat's global configuration: one struct whose fields
// are the global flags. The CLI fills it from its command line; internal
// commands (`moat boot`, `moat gofer`, `moat init`) receive the same values
// back as flags built by ToFlags, so a setting never gets lost crossing a
// process boundary.
//
// How to add a global setting:
//  1. add a field with `flag:"name"` and `help:"..."` tags and a safe default
//     in Default (safe means: right for an unprivileged user too);
//  2. check its value in Validate;
//  3. add a test in config_test.go and a line in README.md;
//  4. if a container may override it, add it to annotationOverrides.
//
// Removed flags go to the graveyard below so old callers get a clear error.
package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/moat-sandbox/moat/internal/network"
)

// Config is the set of global flags.
type Config struct {
	Root            string `flag:"root" help:"directory for container state (default /run/moat, or $XDG_RUNTIME_DIR/moat when rootless)"`
	Log             string `flag:"log" help:"log file (default: stderr)"`
	LogFormat       string `flag:"log-format" help:"log format: text or json"`
	Debug           bool   `flag:"debug" help:"log debug messages"`
	SystemdCgroup   bool   `flag:"systemd-cgroup" help:"manage cgroups through systemd (linux.cgroupsPath is slice:prefix:name)"`
	Rootless        string `flag:"rootless" help:"rootless mode: true, false or auto"`
	FileAccess      string `flag:"file-access" help:"how the container reaches host files: gofer (every file served by the jailed moat gofer over FUSE) or direct (bind mounts, runc semantics, no gofer)"`
	Overlay         string `flag:"overlay" help:"the container's root with the gofer: memory (a throwaway in-memory overlay; the image is never modified) or none (writes reach the bundle's rootfs)"`
	SharedGofer     bool   `flag:"shared-gofer" help:"as root, with the memory overlay: containers of the same image share one read-only FUSE root served by one gofer that outlives them for --shared-gofer-idle, so the next container starts with warm caches (bind mounts and the overlay's upper layer stay per container)"`
	SharedGoferIdle string `flag:"shared-gofer-idle" help:"with --shared-gofer: how long a shared gofer outlives its last container (a Go duration; default 60s)"`
	OverlaySize     string `flag:"overlay-size" help:"size of the memory overlay (bytes, or k/m/g suffix); default: the container's memory limit, else 50% of RAM"`

	// Seccomp (moat do's profile is seccomp.Default).
	SeccompDefault bool `flag:"seccomp-default" help:"give a container whose spec has no linux.seccomp moat's default profile (moat do's: an allowlist; no nested namespaces, io_uring, bpf, ptrace, keyring, TIOCSTI)"`

	// The network (see internal/network and README "Network").
	Network           string `flag:"network" help:"the container's network: auto (as the spec says: a new namespace has loopback only), none (a new namespace with loopback only), host (the host's network: no network isolation) or sandbox (user-mode network through moat boot: NAT, DNS, port forwards, egress policy)"`
	Publish           List   `flag:"publish" help:"sandbox network: publish a container port on the host, [hostIP:]hostPort:containerPort[/tcp|udp] (repeatable)"`
	Egress            List   `flag:"egress" help:"sandbox network: egress rules allow=CIDR[:ports],deny=CIDR[:ports],... (repeatable; with an allow rule, everything else is denied)"`
	EgressDomain      List   `flag:"egress-domain" help:"sandbox network: allow=NAME,*.NAME,... only addresses resolved for these names are reachable (repeatable)"`
	AllowHostLoopback bool   `flag:"allow-host-loopback" help:"sandbox network: the gateway 10.0.2.2 reaches the host's 127.0.0.1 (off: host loopback services stay unreachable)"`
	DNS               List   `flag:"dns" help:"sandbox network: upstream resolver IP[:port] the gateway forwards DNS to (repeatable; default: the host's /etc/resolv.conf nameservers)"`
}

// List is a repeatable flag; its values keep their order.
type List []string

// String implements flag.Value.
func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *List) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// Default returns the configuration used when no flag is given.
func Default() Config {
	return Config{LogFormat: "text", Rootless: "auto", FileAccess: FileAccessGofer, Overlay: OverlayMemory, Network: NetworkAuto}
}

// Network modes.
const (
	NetworkAuto    = network.ModeAuto
	NetworkNone    = network.ModeNone
	NetworkHost    = network.ModeHost
	NetworkSandbox = network.ModeSandbox
)

// File access modes.
const (
	FileAccessGofer  = "gofer"
	FileAccessDirect = "direct"
)

// Overlay modes of the gofer-served root.
const (
	OverlayMemory = "memory"
	OverlayNone   = "none"
)

// annotationOverrides are the settings a container may choose for itself
// through annotations (config.json "annotations"); nothing else can be,
// and publishing from an annotation is limited to loopback addresses.
// The egress policy and host loopback are the operator's alone, and a
// bundle may not choose the host network or direct file access: a bundle
// must not loosen the sandbox.
var annotationOverrides = map[string]string{
	"moat.overlay":     "overlay",
	"moat.file-access": "file-access",
	"moat.network":     "network",
	"moat.publish":     "publish",
}

// WithAnnotations returns the configuration a container with these
// annotations runs with.
func (c Config) WithAnnotations(a map[string]string) (*Config, error) {
	out := c
	for key, flagName := range annotationOverrides {
		v, ok := a[key]
		if !ok {
			continue
		}
		switch flagName {
		case "overlay":
			out.Overlay = v
		case "file-access":
			// The gofer keeps host mounts out of the container; a bundle
			// must not opt out of it against the operator's choice.
			if v == FileAccessDirect && c.FileAccess != FileAccessDirect {
				return nil, fmt.Errorf("annotations: moat.file-access=direct: only the operator can give a container direct access to host files (--file-access=direct)")
			}
			out.FileAccess = v
		case "network":
			// A bundle may isolate itself more, never less than the
			// operator chose.
			if openness(v) > openness(c.Network) {
				return nil, fmt.Errorf("annotations: moat.network=%s is less isolated than the operator's --network=%s: a bundle may only choose a network at least as closed", v, c.Network)
			}
			out.Network = v
		case "publish":
			// Comma-separated, added to the --publish flags. A bundle may
			// publish to this host only: listening on other addresses
			// opens the container to the network, the operator's call.
			ports := splitList(v)
			for _, p := range ports {
				f, err := network.ParsePublish(p)
				if err != nil {
					return nil, fmt.Errorf("annotations: moat.publish: %w", err)
				}
				if !f.HostAddr.Addr().IsLoopback() {
					return nil, fmt.Errorf("annotations: moat.publish %q listens on %s: a bundle may publish on a loopback address only (e.g. 127.0.0.1:%d:%d); only the operator can publish beyond this host (--publish)",
						p, f.HostAddr.Addr(), f.HostAddr.Port(), f.ContainerPort)
				}
			}
			out.Publish = append(append(List{}, c.Publish...), ports...)
		}
	}
	if err := out.Validate(); err != nil {
		return nil, fmt.Errorf("annotations: %w", err)
	}
	if err := out.checkNetworkFlags(); err != nil {
		return nil, err
	}
	return &out, nil
}

// openness orders the network modes from the most closed: none (loopback
// only), sandbox (the user-mode network under the egress policy), auto
// (whatever the spec says, the host's network included), host. Unknown
// modes rank last (Validate names them).
func openness(mode string) int {
	switch mode {
	case NetworkNone:
		return 0
	case NetworkSandbox:
		return 1
	case NetworkAuto:
		return 2
	case NetworkHost:
		return 3
	}
	return 4
}

// graveyard lists removed flags and what to use instead.
var graveyard = map[string]string{}

// Register adds every field of c as a flag of fs, with the current values as
// defaults.
func (c *Config) Register(fs *flag.FlagSet) {
	forEachField(c, func(name, help string, v reflect.Value) {
		switch p := v.Addr().Interface().(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		case *int:
			fs.IntVar(p, name, *p, help)
		case *List:
			fs.Var(p, name, help)
		default:
			panic(fmt.Sprintf("config: field %s has an unsupported type %s", name, v.Type()))
		}
	})
}

// ToFlags renders the settings that differ from Default as command-line
// flags, for an internal command; NewFromFlags(ToFlags()) round-trips.
func (c *Config) ToFlags() []string {
	def := Default()
	dv := reflect.ValueOf(&def).Elem()
	var out []string
	forEachField(c, func(name, _ string, v reflect.Value) {
		d := dv.FieldByName(fieldName(name))
		if reflect.DeepEqual(v.Interface(), d.Interface()) {
			return
		}
		switch x := v.Interface().(type) {
		case string:
			out = append(out, "--"+name+"="+x)
		case bool:
			out = append(out, "--"+name+"="+strconv.FormatBool(x))
		case int:
			out = append(out, "--"+name+"="+strconv.Itoa(x))
		case List:
			for _, e := range x {
				out = append(out, "--"+name+"="+e)
			}
		}
	})
	return out
}

// NewFromFlags parses args (global flags only) into a Config.
func NewFromFlags(args []string) (*Config, error) {
	c := Default()
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	fs.SetOutput(discard{})
	c.Register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &c, c.Validate()
}

// Validate checks every value.
func (c *Config) Validate() error {
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.LogFormat)
	}
	switch c.Rootless {
	case "true", "false", "auto":
	default:
		return fmt.Errorf("--rootless %q: want true, false or auto", c.Rootless)
	}
	switch c.FileAccess {
	case FileAccessGofer, FileAccessDirect:
	default:
		return fmt.Errorf("--file-access %q: want gofer or direct", c.FileAccess)
	}
	switch c.Overlay {
	case OverlayMemory, OverlayNone:
	default:
		return fmt.Errorf("--overlay %q: want memory or none", c.Overlay)
	}
	if _, err := c.SharedIdle(); err != nil {
		return err
	}
	if c.OverlaySize != "" {
		if _, err := ParseSize(c.OverlaySize); err != nil {
			return fmt.Errorf("--overlay-size: %w", err)
		}
	}
	if err := c.validateNetwork(); err != nil {
		return err
	}
	if c.Root != "" && !filepath.IsAbs(c.Root) {
		abs, err := filepath.Abs(c.Root)
		if err != nil {
			return fmt.Errorf("--root %q: %w", c.Root, err)
		}
		c.Root = abs
	}
	return nil
}

func (c *Config) validateNetwork() error {
	switch c.Network {
	case NetworkAuto, NetworkNone, NetworkHost, NetworkSandbox:
	default:
		return fmt.Errorf("--network %q: want auto, none, host or sandbox", c.Network)
	}
	_, err := c.NetworkSettings()
	return err
}

// NetworkSettings parses the sandbox network's flags.
func (c *Config) NetworkSettings() (*network.Settings, error) {
	return network.ParseSettings(c.Publish, c.Egress, c.EgressDomain, c.DNS, c.AllowHostLoopback)
}

// checkNetworkFlags refuses sandbox-only settings for a container whose
// network is not the sandbox: they would silently do nothing.
func (c *Config) checkNetworkFlags() error {
	if c.Network != NetworkSandbox && (len(c.Publish) > 0 || len(c.Egress) > 0 || len(c.EgressDomain) > 0 || len(c.DNS) > 0 || c.AllowHostLoopback) {
		return fmt.Errorf("--publish, --egress, --egress-domain, --dns and --allow-host-loopback need --network=sandbox (the container's network is %s)", c.Network)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// ParseSize reads a byte count with an optional k, m or g suffix (powers of
// 1024).
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	num := s
	if mult != 1 {
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return n * mult, nil
}

// Graveyard returns the replacement hint for a removed flag, if any.
func Graveyard(name string) (string, bool) {
	h, ok := graveyard[strings.TrimLeft(name, "-")]
	return h, ok
}

// DefaultRoot is the state directory used when --root is not given.
// Precondition: rootless has been decided.
func DefaultRoot(rootless bool) string {
	if !rootless {
		return "/run/moat"
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		return filepath.Join(x, "moat")
	}
	return fmt.Sprintf("/tmp/moat-%d", os.Geteuid())
}

func forEachField(c *Config, fn func(name, help string, v reflect.Value)) {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" {
			continue
		}
		fn(name, f.Tag.Get("help"), v.Field(i))
	}
}

// fieldName maps a flag name back to its struct field.
func fieldName(flagName string) string {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("flag") == flagName {
			return t.Field(i).Name
		}
	}
	return ""
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// SharedIdle is --shared-gofer-idle, or its default.
func (c *Config) SharedIdle() (time.Duration, error) {
	if c.SharedGoferIdle == "" {
		return 60 * time.Second, nil
	}
	d, err := time.ParseDuration(c.SharedGoferIdle)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, fmt.Errorf("--shared-gofer-idle %q: want a duration from 1s to 24h", c.SharedGoferIdle)
	}
	return d, nil
}
