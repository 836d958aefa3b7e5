package cmd

import (
	"errors"
	"flag"
	"os"

	"github.com/moat-sandbox/moat/internal/do"
)

// Apply is `moat apply DIR [--yes]`: apply a change set kept by `moat do
// --keep-changes DIR` to the host.
func Apply() *Command {
	var yes bool
	var onto string
	return &Command{
		Name: "apply", Args: "DIR", MinArgs: 1, MaxArgs: 1,
		Short: "show and apply to the host a change set kept by moat do --keep-changes",
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&yes, "yes", false, "apply without asking")
			fs.StringVar(&onto, "onto", "", "apply to this directory instead of the change set's root (a copy of the tree, to review)")
		},
		Run: func(env *Env, args []string) (int, error) {
			err := do.Apply(do.ApplyOptions{Dir: args[0], Yes: yes, Onto: onto, In: os.Stdin, Out: env.Stdout})
			if errors.Is(err, do.ErrInput) {
				return exitDoFailed, err
			}
			return ok(err)
		},
	}
}
