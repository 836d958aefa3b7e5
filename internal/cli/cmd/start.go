package cmd

// Start is `moat start`.
func Start() *Command {
	return &Command{
		Name: "start", Args: "CONTAINER-ID", Short: "run the process of a created container",
		MinArgs: 1, MaxArgs: 1,
		Run: func(env *Env, args []string) (int, error) {
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Start(args[0]))
		},
	}
}
