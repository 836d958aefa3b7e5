package cmd

import (
	"flag"
	"os"

	"github.com/moat-sandbox/moat/internal/container"
)

type createFlags struct {
	bundle, pidFile, consoleSocket string
	preserveFDs                    int
}

func (c *createFlags) register(fs *flag.FlagSet) {
	stringAlias(fs, &c.bundle, "path to the bundle directory (default: the current directory)", "bundle", "b")
	fs.StringVar(&c.pidFile, "pid-file", "", "write the pid of the sandbox supervisor (moat boot) to this file")
	fs.StringVar(&c.consoleSocket, "console-socket", "", "unix socket that receives the terminal's master fd (process.terminal)")
	fs.IntVar(&c.preserveFDs, "preserve-fds", 0, "pass this many descriptors above stdio (3, 4, ...) to the container")
}

func (c *createFlags) options(id string) (container.CreateOptions, error) {
	if c.preserveFDs < 0 {
		return container.CreateOptions{}, usageErr("--preserve-fds %d: must not be negative", c.preserveFDs)
	}
	bundle := c.bundle
	if bundle == "" {
		bundle = "."
	}
	return container.CreateOptions{
		ID: id, Bundle: bundle, PidFile: c.pidFile, ConsoleSocket: c.consoleSocket,
		PreserveFDs: c.preserveFDs, Stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr},
	}, nil
}

// Create is `moat create`.
func Create() *Command {
	f := &createFlags{}
	return &Command{
		Name: "create", Args: "CONTAINER-ID", Short: "create a container (its process waits for start)",
		MinArgs: 1, MaxArgs: 1, Flags: f.register,
		Run: func(env *Env, args []string) (int, error) {
			o, err := f.options(args[0])
			if err != nil {
				return 1, err
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			_, err = rt.Create(o)
			return ok(err)
		},
	}
}
