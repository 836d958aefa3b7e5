package cmd

// Pause is `moat pause`.
func Pause() *Command {
	return &Command{
		Name: "pause", Args: "CONTAINER-ID", Short: "freeze every process of a container",
		MinArgs: 1, MaxArgs: 1,
		Run: func(env *Env, args []string) (int, error) {
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Pause(args[0]))
		},
	}
}

// Resume is `moat resume`.
func Resume() *Command {
	return &Command{
		Name: "resume", Args: "CONTAINER-ID", Short: "thaw a paused container",
		MinArgs: 1, MaxArgs: 1,
		Run: func(env *Env, args []string) (int, error) {
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Resume(args[0]))
		},
	}
}
