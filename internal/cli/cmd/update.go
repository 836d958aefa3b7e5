package cmd

import (
	"flag"
	"io"
	"os"
)

// Update is `moat update`.
func Update() *Command {
	var resources string
	return &Command{
		Name: "update", Args: "CONTAINER-ID", Short: "change a container's resource limits",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &resources, "JSON file of linux.resources to apply, or - for stdin", "resources", "r")
		},
		Run: func(env *Env, args []string) (int, error) {
			if resources == "" {
				return 1, usageErr("update needs --resources FILE (or - for stdin)")
			}
			var in io.Reader = os.Stdin
			if resources != "-" {
				f, err := os.Open(resources)
				if err != nil {
					return 1, err
				}
				defer f.Close()
				in = f
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Update(args[0], in))
		},
	}
}
