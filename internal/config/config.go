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
)

// Config is the set of global flags.
type Config struct {
	Root          string `flag:"root" help:"directory for container state (default /run/moat, or $XDG_RUNTIME_DIR/moat when rootless)"`
	Log           string `flag:"log" help:"log file (default: stderr)"`
	LogFormat     string `flag:"log-format" help:"log format: text or json"`
	Debug         bool   `flag:"debug" help:"log debug messages"`
	SystemdCgroup bool   `flag:"systemd-cgroup" help:"manage cgroups through systemd (linux.cgroupsPath is slice:prefix:name)"`
	Rootless      string `flag:"rootless" help:"rootless mode: true, false or auto"`
	FileAccess    string `flag:"file-access" help:"how the container reaches host files: direct (bind mounts, runc semantics)"`
}

// Default returns the configuration used when no flag is given.
func Default() Config {
	return Config{LogFormat: "text", Rootless: "auto", FileAccess: FileAccessDirect}
}

// File access modes.
const (
	FileAccessDirect = "direct"
)

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
	case FileAccessDirect:
	default:
		return fmt.Errorf("--file-access %q: want %s", c.FileAccess, FileAccessDirect)
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
