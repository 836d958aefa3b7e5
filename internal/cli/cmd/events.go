package cmd

import (
	"flag"
	"time"
)

// Events is `moat events`.
func Events() *Command {
	var stats bool
	interval := 5 * time.Second
	return &Command{
		Name: "events", Args: "CONTAINER-ID", Short: "print resource usage events (JSON lines)",
		MinArgs: 1, MaxArgs: 1,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&stats, "stats", false, "print one stats event and exit")
			fs.DurationVar(&interval, "interval", interval, "time between stats events")
		},
		Run: func(env *Env, args []string) (int, error) {
			if interval <= 0 {
				return 1, usageErr("--interval must be positive")
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			return ok(rt.Events(args[0], stats, interval, env.Stdout))
		},
	}
}
