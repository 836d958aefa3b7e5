// Package benchrt is the plumbing the benchmark commands under test/bench (runbench,
// fsbench) share: OCI runtimes given as command lines, a registry that removes every
// container a benchmark created (on exit, on error and on a signal), the base
// config.json from a runtime's `spec`, /proc process trees and small helpers.
//
// Stdlib only: it lives in the moat module but must not pull in dependencies.
package benchrt

import (
	"os/exec"
	"path/filepath"
	"strings"
)

// Runtime is one runtime under test: a label and a command line (the command and its
// global flags), or a Native pseudo-runtime that has no command at all.
type Runtime struct {
	Label  string
	Argv   []string // command and its global flags; nil when Native
	Native bool     // not a runtime: the workload runs on the host (fsbench's "native")
	Err    error    // set when the runtime is skipped
}

// Cmd returns the runtime's command with args after its global flags.
func (r *Runtime) Cmd(args ...string) *exec.Cmd {
	argv := append(append([]string{}, r.Argv[1:]...), args...)
	return exec.Command(r.Argv[0], argv...)
}

// Resolve makes the command an absolute path found in PATH, or records in Err why it
// cannot be found. Native runtimes are left alone.
func (r *Runtime) Resolve() {
	if r.Native {
		return
	}
	if p, err := exec.LookPath(r.Argv[0]); err != nil {
		r.Err = err
	} else if abs, err := filepath.Abs(p); err == nil {
		r.Argv[0] = abs
	}
}

// ParseRuntimes parses a comma-separated list of [label=]command [global flags...]; the
// label defaults to the command's base name followed by its flags. With native, the item
// "native" (optionally labelled) is the Native pseudo-runtime; without, it is a command
// like any other.
func ParseRuntimes(s string, native bool) []*Runtime {
	var out []*Runtime
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		label := ""
		if i := strings.IndexByte(item, '='); i > 0 && !strings.ContainsAny(item[:i], " /") {
			label, item = item[:i], item[i+1:]
		}
		if native && item == "native" {
			if label == "" {
				label = "native"
			}
			out = append(out, &Runtime{Label: label, Native: true})
			continue
		}
		argv := strings.Fields(item)
		if label == "" {
			label = filepath.Base(argv[0])
			if len(argv) > 1 {
				label += " " + strings.Join(argv[1:], " ")
			}
		}
		out = append(out, &Runtime{Label: label, Argv: argv})
	}
	return out
}
