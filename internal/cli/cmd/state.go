package cmd

import "encoding/json"

// State is `moat state`.
func State() *Command {
	return &Command{
		Name: "state", Args: "CONTAINER-ID", Short: "print a container's OCI state as JSON",
		MinArgs: 1, MaxArgs: 1,
		Run: func(env *Env, args []string) (int, error) {
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			st, err := rt.State(args[0])
			if err != nil {
				return 1, err
			}
			data, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				return 1, err
			}
			_, err = env.Stdout.Write(append(data, '\n'))
			return ok(err)
		},
	}
}
