package cmd

import (
	"flag"
	"io"
	"os"

	"github.com/moat-sandbox/moat/internal/log"
	"github.com/moat-sandbox/moat/internal/netproc"
)

// Net is `moat net`, the sandbox network's confined process.
func Net() *Command {
	var a netproc.Args
	logFD := -1
	return &Command{
		Name: "net", Short: "(internal) runs the container's sandbox network", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&a.SyncFD, "net-sync-fd", -1, "socket to boot: the settings, TAP and published sockets come on it, port requests follow")
			fs.IntVar(&logFD, "log-fd", -1, "log destination")
		},
		Run: func(env *Env, args []string) (int, error) {
			if a.SyncFD < 0 {
				return 1, usageErr("net is internal: it needs --net-sync-fd")
			}
			var w io.Writer = os.Stderr
			if logFD >= 0 {
				w = os.NewFile(uintptr(logFD), "log")
			}
			l, err := log.New(w, env.Config.LogFormat, env.Config.Debug, "net")
			if err != nil {
				return 1, err
			}
			if err := netproc.Main(a, l); err != nil {
				l.Error("net: " + err.Error())
				return 1, err
			}
			return 0, nil
		},
	}
}
