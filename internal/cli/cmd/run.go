package cmd

import (
	"flag"

	"github.com/moat-sandbox/moat/internal/container"
)

// Run is `moat run`.
func Run() *Command {
	f := &createFlags{}
	var detach, keep bool
	return &Command{
		Name: "run", Args: "CONTAINER-ID", Short: "create and start a container, and wait for it unless detached",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *flag.FlagSet) {
			f.register(fs)
			boolAlias(fs, &detach, "start the container and return (do not wait)", "detach", "d")
			fs.BoolVar(&keep, "keep", false, "do not delete the container after it exits")
		},
		Run: func(env *Env, args []string) (int, error) {
			o, err := f.options(args[0])
			if err != nil {
				return 1, err
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return rt.Run(container.RunOptions{CreateOptions: o, Detach: detach, Keep: keep})
		},
	}
}
