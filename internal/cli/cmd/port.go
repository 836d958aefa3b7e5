package cmd

import (
	"encoding/json"
	"flag"
	"fmt"

	"github.com/moat-sandbox/moat/internal/container"
)

// Port is `moat port`: the sandbox network's port forwards of a running
// container.
func Port() *Command {
	format := "table"
	return &Command{
		Name:    "port",
		Args:    "ls CONTAINER-ID | add CONTAINER-ID [hostIP:]hostPort:containerPort[/tcp|udp] | rm CONTAINER-ID PUBLISH",
		Short:   "list, add or remove port forwards of a container on the sandbox network",
		MinArgs: 2, MaxArgs: 3,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &format, "output format: table or json", "format", "f")
		},
		Run: func(env *Env, args []string) (int, error) {
			if format != "table" && format != "json" {
				return 1, usageErr("--format %q: want table or json", format)
			}
			op, id, publish := args[0], args[1], ""
			switch {
			case op == container.PortList && len(args) != 2:
				return 1, usageErr("port ls takes only the container id")
			case (op == container.PortAdd || op == container.PortRemove) && len(args) != 3:
				return 1, usageErr("port %s needs the container id and [hostIP:]hostPort:containerPort[/tcp|udp]", op)
			case len(args) == 3:
				publish = args[2]
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			fwds, err := rt.Ports(id, op, publish)
			if err != nil {
				return 1, err
			}
			if format == "json" {
				return ok(json.NewEncoder(env.Stdout).Encode(fwds))
			}
			for _, f := range fwds {
				fmt.Fprintln(env.Stdout, f)
			}
			return 0, nil
		},
	}
}
