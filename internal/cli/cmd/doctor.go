package cmd

import (
	"encoding/json"
	"flag"
	"fmt"

	"github.com/moat-sandbox/moat/internal/rootless"
)

// Doctor is `moat doctor`: can this user run moat, and what to fix.
func Doctor() *Command {
	format := "text"
	var probeOverlay bool
	return &Command{
		Name: "doctor", Short: "check what moat needs on this host (rootless included) and how to fix it",
		MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &format, "output format: text or json", "format", "f")
			fs.BoolVar(&probeOverlay, "probe-overlay", false, "(internal) mount a test overlay in the current namespaces")
		},
		Run: func(env *Env, args []string) (int, error) {
			if probeOverlay {
				return ok(rootless.ProbeOverlay())
			}
			if format != "text" && format != "json" {
				return 1, usageErr("--format %q: want text or json", format)
			}
			checks := rootless.Diagnose("/proc/self/exe")
			if format == "json" {
				if err := json.NewEncoder(env.Stdout).Encode(checks); err != nil {
					return 1, err
				}
			} else {
				printChecks(env, checks)
			}
			if n := rootless.Summary(checks); n > 0 {
				return 1, fmt.Errorf("%d required check(s) failed", n)
			}
			return 0, nil
		},
	}
}

func printChecks(env *Env, checks []rootless.Check) {
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark = "WARN"
			if c.Required {
				mark = "FAIL"
			}
		}
		fmt.Fprintf(env.Stdout, "%s %-32s %s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(env.Stdout, "     %-32s fix: %s\n", "", c.Fix)
		}
	}
}
