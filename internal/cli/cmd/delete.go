package cmd

import "flag"

// Delete is `moat delete`.
func Delete() *Command {
	var force bool
	return &Command{
		Name: "delete", Args: "CONTAINER-ID", Short: "delete a container (running ones need --force)",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *flag.FlagSet) {
			boolAlias(fs, &force, "kill a running container first; succeed if it does not exist", "force", "f")
		},
		Run: func(env *Env, args []string) (int, error) {
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Delete(args[0], force))
		},
	}
}
