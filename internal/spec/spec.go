// Package spec loads an OCI bundle's config.json, checks it against what moat
// can honour, and fills in defaults. Every problem is reported with the JSON
// path of the offending field, so `moat create` fails with one clear line.
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrInvalid marks every validation failure.
var ErrInvalid = errors.New("invalid config")

// Bundle is a loaded and validated bundle.
type Bundle struct {
	Dir    string // absolute bundle directory
	Rootfs string // absolute root filesystem path
	Spec   *specs.Spec
	// Warnings are fields moat ignores; the caller logs each once.
	Warnings []string
}

// Load reads <dir>/config.json and validates it.
// Precondition: dir is the bundle path as the user gave it.
func Load(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %q: %w", dir, err)
	}
	if st, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("bundle %s is not a directory", abs)
	}
	f, err := os.Open(filepath.Join(abs, ConfigFilename))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s has no %s: %w", abs, ConfigFilename, err)
		}
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	s, err := Decode(f)
	if err != nil {
		return nil, err
	}
	return FromSpec(abs, s)
}

// FromSpec validates a spec made in memory (`moat do`), as Load does a
// bundle's config.json.
// Precondition: dir is absolute; relative paths in s are resolved there.
func FromSpec(dir string, s *specs.Spec) (*Bundle, error) {
	b := &Bundle{Dir: dir, Spec: s}
	if err := b.validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// AnnotationUpper names where in the container the memory overlay's upper
// layer is shown, read-only (`moat do --changes`); the container sees
// only its own writes there.
const AnnotationUpper = "moat.upper"

// CoverDir is where a process that builds or serves the container's root
// mounts its private tmpfs: over the root filesystem's own path, or, when
// the root is the host's "/" (`moat do`), over a directory of /proc (never
// a bind source, which `moat do` refuses under /proc; init still opens
// every other host path after covering it). A mount over "/" itself
// is not seen by lookups that start from "/": names made "in" it would
// land on the host.
func CoverDir(rootfs string) string {
	if filepath.Clean(rootfs) != "/" {
		return rootfs
	}
	// /proc/driver is always made; a runtime that moat itself runs in
	// may have masked it with a file, and a mount goes over a directory.
	for _, d := range []string{"/proc/driver", "/proc/fs", "/proc/tty"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return "/proc/driver"
}

// Decode parses a config.json strictly: unknown top-level or nested fields
// are allowed (the spec permits extensions), but wrong types are not.
func Decode(r io.Reader) (*specs.Spec, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read config.json: %w", err)
	}
	var s specs.Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: config.json: %s", ErrInvalid, describeJSONError(data, err))
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return nil, fmt.Errorf("%w: config.json: trailing data after the JSON object", ErrInvalid)
	}
	return &s, nil
}

func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Sprintf("malformed JSON at line %d: %v", line, se)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q: cannot use a JSON %s as %s", te.Field, te.Value, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: the document ends early (truncated file?)"
	}
	return err.Error()
}

func invalid(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...))
}

func (b *Bundle) warn(format string, a ...any) {
	b.Warnings = append(b.Warnings, fmt.Sprintf(format, a...))
}

func (b *Bundle) validate() error {
	s := b.Spec
	if s.Version == "" {
		return invalid("ociVersion", "missing")
	}
	if !strings.HasPrefix(s.Version, "1.") {
		return invalid("ociVersion", "%q is not a 1.x version", s.Version)
	}
	if err := b.validateRoot(); err != nil {
		return err
	}
	if s.Process == nil {
		return invalid("process", "missing (moat needs a process to run)")
	}
	if err := ValidateProcess(s.Process, "process"); err != nil {
		return err
	}
	if s.Linux == nil {
		return invalid("linux", "missing")
	}
	for _, check := range []func() error{
		b.validateNamespaces, b.validateMounts, b.validateLinux, b.validateHooks,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bundle) validateRoot() error {
	s := b.Spec
	if s.Root == nil || s.Root.Path == "" {
		return invalid("root.path", "missing")
	}
	p := s.Root.Path
	if !filepath.IsAbs(p) {
		p = filepath.Join(b.Dir, p)
	}
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return invalid("root.path", "root filesystem %s does not exist", p)
		}
		return invalid("root.path", "%v", err)
	}
	if !st.IsDir() {
		return invalid("root.path", "%s is not a directory", p)
	}
	b.Rootfs = filepath.Clean(p)
	return nil
}

// ValidateProcess checks a process object (config.json's, or `exec --process`).
func ValidateProcess(p *specs.Process, field string) error {
	if len(p.Args) == 0 && p.CommandLine == "" {
		return invalid(field+".args", "empty: nothing to run")
	}
	if p.CommandLine != "" {
		return invalid(field+".commandLine", "is for Windows; use args")
	}
	if p.Args[0] == "" {
		return invalid(field+".args[0]", "empty program name")
	}
	if p.Cwd == "" {
		return invalid(field+".cwd", "missing")
	}
	if !filepath.IsAbs(p.Cwd) {
		return invalid(field+".cwd", "%q is not an absolute path", p.Cwd)
	}
	for i, e := range p.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return invalid(fmt.Sprintf("%s.env[%d]", field, i), "%q is not NAME=value", e)
		}
	}
	if p.Capabilities != nil {
		if err := validateCaps(p.Capabilities, field+".capabilities"); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, r := range p.Rlimits {
		f := fmt.Sprintf("%s.rlimits[%d]", field, i)
		if _, ok := RlimitByName(r.Type); !ok {
			return invalid(f, "unknown rlimit type %q", r.Type)
		}
		if seen[r.Type] {
			return invalid(f, "%s given twice", r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return invalid(f, "%s soft limit %d exceeds hard limit %d", r.Type, r.Soft, r.Hard)
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return invalid(field+".oomScoreAdj", "%d is outside -1000..1000", *p.OOMScoreAdj)
	}
	if p.IOPriority != nil {
		return invalid(field+".ioPriority", "not supported by moat")
	}
	if p.Scheduler != nil {
		return invalid(field+".scheduler", "not supported by moat")
	}
	if p.ExecCPUAffinity != nil {
		return invalid(field+".execCPUAffinity", "not supported by moat")
	}
	return nil
}

func validateCaps(c *specs.LinuxCapabilities, field string) error {
	sets := map[string][]string{
		"bounding": c.Bounding, "effective": c.Effective, "inheritable": c.Inheritable,
		"permitted": c.Permitted, "ambient": c.Ambient,
	}
	for set, names := range sets {
		for _, n := range names {
			if _, ok := CapabilityByName(n); !ok {
				return invalid(field+"."+set, "unknown capability %q", n)
			}
		}
	}
	return nil
}

func (b *Bundle) validateHooks() error {
	h := b.Spec.Hooks
	if h == nil {
		return nil
	}
	kinds := map[string][]specs.Hook{
		"prestart": h.Prestart, "createRuntime": h.CreateRuntime, "createContainer": h.CreateContainer,
		"startContainer": h.StartContainer, "poststart": h.Poststart, "poststop": h.Poststop,
	}
	for kind, hooks := range kinds {
		for i, hk := range hooks {
			f := fmt.Sprintf("hooks.%s[%d]", kind, i)
			if !filepath.IsAbs(hk.Path) {
				return invalid(f+".path", "%q is not an absolute path", hk.Path)
			}
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				return invalid(f+".timeout", "%d is not a positive number of seconds", *hk.Timeout)
			}
		}
	}
	return nil
}
