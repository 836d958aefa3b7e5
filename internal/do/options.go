// Package do is `moat do`: it runs a host command in a fresh sandbox made
// from a generated spec (no image, no bundle on disk). The host's "/" is
// served read-only by the gofer under the memory overlay, so the command may
// write anywhere and nothing reaches the host except through --rw paths;
// credentials and moat's own state are hidden; there is no network unless
// asked. The container process is moat's small reaper (package doinit),
// which runs the command as its child: as pid 1 of its namespace the
// command itself would ignore ^C and every signal it has no handler for.
//
// The lifecycle is package container's (create, start, wait, delete), with
// the spec handed over in memory.
package do

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moat-sandbox/moat/internal/config"
)

// ErrInput marks bad flags or a bad profile: nothing was started.
var ErrInput = errors.New("bad input")

// inputError is an ErrInput whose text is only its own message.
type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == ErrInput }

func inputErr(format string, a ...any) error {
	return &inputError{fmt.Sprintf(format, a...)}
}

// Options are `moat do`'s settings, from flags and --profile. The JSON
// names are the flags' (a profile holds the same settings).
type Options struct {
	Args []string `json:"-"`
	// Cwd is the working directory inside (default: the current one).
	Cwd string `json:"cwd,omitempty"`
	// Root maps the caller to uid 0 inside (default: the caller's uid).
	Root bool     `json:"root,omitempty"`
	RW   []string `json:"rw,omitempty"`
	RO   []string `json:"ro,omitempty"`
	Hide []string `json:"hide,omitempty"`
	// NoDefaultHides keeps the credentials and state dirs visible.
	NoDefaultHides bool     `json:"no-default-hides,omitempty"`
	Network        string   `json:"network,omitempty"`
	Egress         []string `json:"egress,omitempty"`
	EgressDomain   []string `json:"egress-domain,omitempty"`
	Publish        []string `json:"publish,omitempty"`
	Memory         string   `json:"memory,omitempty"`
	CPUs           string   `json:"cpus,omitempty"`
	Pids           int64    `json:"pids,omitempty"`
	Timeout        string   `json:"timeout,omitempty"`
	// Seccomp is default, none, or an OCI seccomp profile (JSON file).
	Seccomp string `json:"seccomp,omitempty"`

	// Changes prints what the command changed after it exits, in Format
	// (text or json); KeepChanges saves the change set to a directory.
	Changes     bool   `json:"changes,omitempty"`
	Format      string `json:"format,omitempty"`
	KeepChanges string `json:"keep-changes,omitempty"`

	// Set by the command, not by a profile.
	DryRun bool     `json:"-"`
	Tty    bool     `json:"-"`
	Env    []string `json:"-"`
	// Exe is moat's own path: the reaper runs from it (read-only through
	// the gofer, as every host file).
	Exe string `json:"-"`
}

// Network modes of `moat do`.
const (
	NetNone    = config.NetworkNone
	NetSandbox = config.NetworkSandbox
	NetHost    = config.NetworkHost
)

// LoadProfile reads a profile: TOML when its name ends in .toml, else
// JSON; the keys are the flags' names.
func LoadProfile(path string) (*Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, inputErr("--profile: %v", err)
	}
	if strings.HasSuffix(path, ".toml") {
		m, err := parseTOML(string(data))
		if err != nil {
			return nil, inputErr("--profile %s: %v", path, err)
		}
		if data, err = json.Marshal(m); err != nil {
			return nil, err
		}
	}
	var o Options
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return nil, inputErr("--profile %s: %v", path, err)
	}
	return &o, nil
}

// Merge lays the flags the user set over a profile: scalars replace, lists
// add. set names the flags given on the command line.
func (o *Options) Merge(flags *Options, set map[string]bool) {
	o.RW = append(o.RW, flags.RW...)
	o.RO = append(o.RO, flags.RO...)
	o.Hide = append(o.Hide, flags.Hide...)
	o.Egress = append(o.Egress, flags.Egress...)
	o.EgressDomain = append(o.EgressDomain, flags.EgressDomain...)
	o.Publish = append(o.Publish, flags.Publish...)
	scalars := map[string]func(){
		"cwd": func() { o.Cwd = flags.Cwd }, "root": func() { o.Root = flags.Root },
		"no-default-hides": func() { o.NoDefaultHides = flags.NoDefaultHides },
		"network":          func() { o.Network = flags.Network }, "memory": func() { o.Memory = flags.Memory },
		"cpus": func() { o.CPUs = flags.CPUs }, "pids": func() { o.Pids = flags.Pids },
		"timeout": func() { o.Timeout = flags.Timeout },
		"changes": func() { o.Changes = flags.Changes }, "format": func() { o.Format = flags.Format },
		"keep-changes": func() { o.KeepChanges = flags.KeepChanges },
		"seccomp":      func() { o.Seccomp = flags.Seccomp },
	}
	for name, apply := range scalars {
		if set[name] {
			apply()
		}
	}
	o.Args, o.DryRun, o.Tty, o.Env, o.Exe = flags.Args, flags.DryRun, flags.Tty, flags.Env, flags.Exe
}

// limits are the parsed --memory, --cpus, --pids and --timeout.
type limits struct {
	memory  int64
	quota   int64 // CPU microseconds per period
	pids    int64
	timeout time.Duration
}

// cpuPeriod is the CFS period --cpus is expressed in.
const cpuPeriod = 100000

func (o *Options) limits() (limits, error) {
	var l limits
	var err error
	if o.Memory != "" {
		if l.memory, err = config.ParseSize(o.Memory); err != nil {
			return l, inputErr("--memory: %v", err)
		}
	}
	if o.CPUs != "" {
		f, err := strconv.ParseFloat(o.CPUs, 64)
		if err != nil || f <= 0 || f > 4096 {
			return l, inputErr("--cpus %q: want a positive number of CPUs (e.g. 1.5)", o.CPUs)
		}
		l.quota = max(int64(f*cpuPeriod), 1000)
	}
	if o.Pids < 0 {
		return l, inputErr("--pids %d: must not be negative", o.Pids)
	}
	l.pids = o.Pids
	if o.Timeout != "" {
		if l.timeout, err = time.ParseDuration(o.Timeout); err != nil || l.timeout <= 0 {
			return l, inputErr("--timeout %q: want a positive duration (e.g. 30s, 5m)", o.Timeout)
		}
	}
	return l, nil
}

// absPaths makes every path absolute (relative to cwd) and clean.
func absPaths(flag string, paths []string, cwd string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "" {
			return nil, inputErr("--%s: empty path", flag)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		out = append(out, filepath.Clean(p))
	}
	return out, nil
}
