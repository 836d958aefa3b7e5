package cmd

import (
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"
)

// List is `moat list`.
func List() *Command {
	format := "table"
	var quiet bool
	return &Command{
		Name: "list", Short: "list containers", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &format, "output format: table or json", "format", "f")
			boolAlias(fs, &quiet, "print only container ids", "quiet", "q")
		},
		Run: func(env *Env, args []string) (int, error) {
			if format != "table" && format != "json" {
				return 1, usageErr("--format %q: want table or json", format)
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			all, err := rt.List()
			if err != nil {
				return 1, err
			}
			switch {
			case quiet:
				for _, c := range all {
					fmt.Fprintln(env.Stdout, c.ID)
				}
			case format == "json":
				if all == nil {
					fmt.Fprintln(env.Stdout, "null")
					return 0, nil
				}
				return ok(json.NewEncoder(env.Stdout).Encode(all))
			default:
				w := tabwriter.NewWriter(env.Stdout, 12, 1, 3, ' ', 0)
				fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, c := range all {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", c.ID, c.Pid, c.Status, c.Bundle,
						c.Created.Format(time.RFC3339Nano), c.Owner)
				}
				return ok(w.Flush())
			}
			return 0, nil
		},
	}
}
