package cmd

import (
	"flag"
	"os"

	"github.com/moat-sandbox/moat/internal/container"
)

// Exec is `moat exec`.
func Exec() *Command {
	var o container.ExecOptions
	var env, caps stringList
	return &Command{
		Name: "exec", Args: "CONTAINER-ID [COMMAND [ARG...]]", Short: "run a process in a running container",
		MinArgs: 1, MaxArgs: -1,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &o.ProcessFile, "path to a process.json (replaces COMMAND and the other process flags)", "process", "p")
			boolAlias(fs, &o.Tty, "allocate a terminal", "tty", "t")
			fs.StringVar(&o.Cwd, "cwd", "", "working directory in the container")
			fs.Var(&env, "env", "set an environment variable NAME=value (repeatable)")
			fs.Var(&env, "e", "short for --env")
			stringAlias(fs, &o.User, "run as UID[:GID]", "user", "u")
			fs.Var(&caps, "cap", "add a capability (repeatable)")
			fs.Var(&caps, "c", "short for --cap")
			fs.BoolVar(&o.NoNewPrivs, "no-new-privs", false, "set no_new_privs for the process")
			fs.StringVar(&o.ConsoleSocket, "console-socket", "", "unix socket that receives the terminal's master fd")
			boolAlias(fs, &o.Detach, "do not wait: leave a proxy process that exits with the process's status", "detach", "d")
			fs.StringVar(&o.PidFile, "pid-file", "", "write the pid to wait on (the process, or the proxy with --detach)")
			fs.IntVar(&o.PreserveFDs, "preserve-fds", 0, "pass this many descriptors above stdio to the process")
		},
		Run: func(e *Env, args []string) (int, error) {
			o.ID, o.Args = args[0], args[1:]
			if len(o.Args) > 0 && o.Args[0] == "--" {
				o.Args = o.Args[1:]
			}
			if o.ProcessFile == "" && len(o.Args) == 0 {
				return 1, usageErr("exec needs a COMMAND or --process")
			}
			if o.PreserveFDs < 0 {
				return 1, usageErr("--preserve-fds %d: must not be negative", o.PreserveFDs)
			}
			o.Env, o.AddCaps = env, caps
			o.Stdio = [3]*os.File{os.Stdin, os.Stdout, os.Stderr}
			rt, err := e.Runtime()
			if err != nil {
				return 1, err
			}
			return rt.Exec(o)
		},
	}
}
