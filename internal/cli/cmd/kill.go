package cmd

import (
	"flag"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// Kill is `moat kill`.
func Kill() *Command {
	var all bool
	return &Command{
		Name: "kill", Args: "CONTAINER-ID [SIGNAL]", Short: "send a signal (default SIGTERM) to the container process",
		MinArgs: 1, MaxArgs: 2,
		Flags: func(fs *flag.FlagSet) {
			boolAlias(fs, &all, "send the signal to every process in the container", "all", "a")
		},
		Run: func(env *Env, args []string) (int, error) {
			sig := unix.SIGTERM
			if len(args) == 2 {
				s, err := procutil.ParseSignal(args[1])
				if err != nil {
					return 1, usageErr("%v", err)
				}
				sig = s
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Kill(args[0], sig, all))
		},
	}
}
