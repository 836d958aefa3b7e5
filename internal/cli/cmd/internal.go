package cmd

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/moat-sandbox/moat/internal/boot"
	"github.com/moat-sandbox/moat/internal/container"
	"github.com/moat-sandbox/moat/internal/doinit"
	"github.com/moat-sandbox/moat/internal/gofer"
	"github.com/moat-sandbox/moat/internal/initproc"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/log"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
	"github.com/moat-sandbox/moat/internal/spawner"
)

// Internal commands are moat's own process roles; users never run them.

// Boot is `moat boot`, the sandbox supervisor.
func Boot() *Command {
	var a boot.Args
	var stdio, extra string
	logFD, syncUserns := -1, -1
	return &Command{
		Name: "boot", Short: "(internal) sandbox supervisor", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&a.ID, "id", "", "container id")
			fs.StringVar(&a.Bundle, "bundle", "", "absolute bundle directory")
			fs.IntVar(&a.PlanFD, "plan-fd", -1, "fd holding the CLI's plan (the effective spec and what was decided for it)")
			fs.IntVar(&a.ExeFD, "exe-fd", -1, "protected moat (sealed memfd, or read-only overlay as root), run by the init and exec helpers")
			fs.IntVar(&a.CreateSyncFD, "create-sync-fd", -1, "socket to the creating CLI (BootCreated, ClientCreateCommitted)")
			fs.IntVar(&a.ControllerFD, "controller-fd", -1, "listening controller socket")
			fs.IntVar(&logFD, "log-fd", -1, "log destination")
			fs.StringVar(&stdio, "stdio-fds", "", "the container's stdin,stdout,stderr")
			fs.StringVar(&extra, "extra-fds", "", "descriptors the container gets at 3.. (preserved, then LISTEN_FDS)")
			fs.IntVar(&a.ListenFDs, "listen-fds", 0, "how many of --extra-fds are socket-activation fds")
			fs.IntVar(&syncUserns, "sync-userns-fd", -1, "closed by the CLI once it wrote this user namespace's maps (then boot re-executes itself)")
		},
		Run: func(env *Env, args []string) (int, error) {
			if syncUserns >= 0 {
				return 1, rootless.AwaitMapsAndReexec(syncUserns, os.Args)
			}
			if err := rootless.CheckReexeced(); err != nil {
				return 1, err
			}
			var err error
			if a.StdioFDs, err = procutil.ParseFDList(stdio); err != nil {
				return 1, fmt.Errorf("--stdio-fds: %w", err)
			}
			if a.ExtraFDs, err = procutil.ParseFDList(extra); err != nil {
				return 1, fmt.Errorf("--extra-fds: %w", err)
			}
			if a.ID == "" || a.Bundle == "" || a.PlanFD < 0 || a.ExeFD < 0 || a.CreateSyncFD < 0 || a.ControllerFD < 0 {
				return 1, usageErr("boot is internal: it needs --id, --bundle, --plan-fd, --exe-fd, --create-sync-fd and --controller-fd")
			}
			// What boot was handed reaches its children (hooks, the gofer,
			// helpers) only when donated explicitly. (Not before the
			// re-exec above: it keeps every descriptor.)
			if err := procutil.CloseOnExecFrom(3); err != nil {
				return 1, err
			}
			a.Config = env.Config
			var w io.Writer = env.Stderr
			if logFD >= 0 {
				a.LogFile = os.NewFile(uintptr(logFD), "log")
				w = a.LogFile
			}
			l, err := log.New(w, env.Config.LogFormat, env.Config.Debug, "boot")
			if err != nil {
				return 1, err
			}
			return boot.Main(a, l)
		},
	}
}

// Init is `moat init`, the container init and exec helper.
func Init() *Command {
	var a initproc.Args
	logFD, exeFD := -1, -1
	return &Command{
		Name: "init", Short: "(internal) container init helper", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&a.InitSyncFD, "init-sync-fd", -1, "socket to boot")
			fs.IntVar(&logFD, "log-fd", -1, "log destination")
			fs.IntVar(&exeFD, "exe-fd", -1, "the protected executable this helper runs from (closed at once)")
			fs.BoolVar(&a.Exec, "exec", false, "join a running container for exec instead of creating one")
		},
		Run: func(env *Env, args []string) (int, error) {
			closeFD(exeFD)
			if a.InitSyncFD < 0 {
				return 1, usageErr("init is internal: it needs --init-sync-fd")
			}
			l, err := log.FromFD(logFD, env.Config.LogFormat, env.Config.Debug, "init")
			if err != nil {
				return 1, err
			}
			return ok(initproc.Main(a, l))
		},
	}
}

// Gofer is `moat gofer`, the file server.
func Gofer() *Command {
	var a gofer.Args
	var ioFDs string
	logFD, exeFD := -1, -1
	var shared bool
	sa := gofer.SharedArgs{FuseFD: -1, MountFD: -1, ListenFD: -1, MaxClients: 256}
	idle := 60
	return &Command{
		Name: "gofer", Short: "(internal) serves the container's files over FUSE", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&a.SyncFD, "gofer-sync-fd", -1, "socket to boot: the gofer's config in, the resolved mount list out")
			fs.StringVar(&ioFDs, "io-fds", "", "one socket per served tree (root first, then bind mounts in spec order); init sends each its /dev/fuse descriptor")
			fs.IntVar(&logFD, "log-fd", -1, "log destination")
			fs.IntVar(&exeFD, "exe-fd", -1, "the protected executable this process runs from (closed at once)")
			fs.BoolVar(&shared, "shared", false, "serve one image's root to every container boot attaches (--shared-gofer)")
			fs.IntVar(&sa.FuseFD, "fuse-fd", -1, "with --shared: /dev/fuse of the shared superblock")
			fs.IntVar(&sa.MountFD, "mount-fd", -1, "with --shared: a detached mount of it, handed to each boot")
			fs.IntVar(&sa.ListenFD, "listen-fd", -1, "with --shared: the listening socket boots connect to")
			fs.IntVar(&idle, "idle", 60, "with --shared: seconds to outlive the last container")
			fs.StringVar(&sa.Rootfs, "rootfs", "", "with --shared: the image's absolute root filesystem path")
			fs.StringVar(&sa.RootfsID, "rootfs-id", "", "with --shared: dev:ino of --rootfs as boot keyed it")
		},
		Run: func(env *Env, args []string) (int, error) {
			closeFD(exeFD)
			if shared {
				return sharedGofer(env, sa, idle, logFD)
			}
			var err error
			if a.IoFDs, err = procutil.ParseFDList(ioFDs); err != nil {
				return 1, fmt.Errorf("--io-fds: %w", err)
			}
			if a.SyncFD < 0 || len(a.IoFDs) == 0 {
				return 1, usageErr("gofer is internal: it needs --gofer-sync-fd and --io-fds")
			}
			l, err := goferLog(env, logFD)
			if err != nil {
				return 1, err
			}
			if err := gofer.Main(a, l); err != nil {
				l.Error("gofer: " + err.Error())
				return 1, err
			}
			return 0, nil
		},
	}
}

// Spawner is `moat spawner`, which forks boot's children once boot is
// filtered.
func Spawner() *Command {
	requestsFD, logFD := -1, -1
	return &Command{
		Name: "spawner", Short: "(internal) forks boot's children outside boot's seccomp filter", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&requestsFD, "spawn-requests-fd", -1, "socket to boot: spawn and hook requests in")
			fs.IntVar(&logFD, "log-fd", -1, "log destination")
		},
		Run: func(env *Env, args []string) (int, error) {
			if requestsFD < 0 {
				return 1, usageErr("spawner is internal: it needs --spawn-requests-fd")
			}
			// Its children (hooks) get only what they are handed.
			if err := procutil.CloseOnExecFrom(3); err != nil {
				return 1, err
			}
			l, err := log.FromFD(logFD, env.Config.LogFormat, env.Config.Debug, "spawner")
			if err != nil {
				return 1, err
			}
			if err := spawner.Main(requestsFD, l); err != nil {
				l.Error("spawner: " + err.Error())
				return 1, err
			}
			return 0, nil
		},
	}
}

// ExecProxy is `moat exec-proxy`, left behind by `exec --detach`.
func ExecProxy() *Command {
	connFD, readyFD := -1, -1
	return &Command{
		Name: "exec-proxy", Short: "(internal) waits for a detached exec'd process", MinArgs: 0, MaxArgs: 0,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&connFD, "exec-conn-fd", -1, "controller connection of the exec")
			fs.IntVar(&readyFD, "ready-fd", -1, "written once the proxy forwards signals")
		},
		Run: func(env *Env, args []string) (int, error) {
			conn, err := ipc.FromFD(connFD, "exec-conn")
			if err != nil {
				return 1, err
			}
			var ready *os.File
			if readyFD >= 0 {
				ready = os.NewFile(uintptr(readyFD), "ready")
			}
			return container.WaitExec(conn, nil, nil, ready), nil
		},
	}
}

// DoInit is `moat do-init -- CMD...`, the reaper `moat do` runs as the
// sandbox's first process.
func DoInit() *Command {
	a := doinit.Args{ChangesFD: -1, UID: -1, GID: -1, SeccompFD: -1, ReadyFD: -1}
	return &Command{
		Name: "do-init", Args: "-- COMMAND [ARG...]", Short: "(internal) runs moat do's command as its child and reaps",
		MinArgs: 1, MaxArgs: -1,
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&a.ChangesFD, "changes-fd", -1, "where the upper layer's entries go once the command has ended")
			fs.StringVar(&a.Upper, "upper", "", "where the upper layer is shown (read-only)")
			fs.BoolVar(&a.Content, "content", false, "send regular files' contents with their entries")
			fs.IntVar(&a.UID, "uid", -1, "run the command as this uid in a nested user namespace (mapped to the sandbox's root)")
			fs.IntVar(&a.GID, "gid", -1, "the command's gid there")
			fs.IntVar(&a.SeccompFD, "seccomp-fd", -1, "the seccomp profile (OCI JSON) the command runs under, with --uid")
			fs.IntVar(&a.ReadyFD, "ready-fd", -1, "gets one byte once the reaper handles signals")
			fs.BoolVar(&a.Stage2, "stage2", false, "the reaper's child: install the profile from --seccomp-fd and execute the command")
		},
		Run: func(env *Env, args []string) (int, error) {
			if a.ChangesFD >= 0 && a.Upper == "" {
				return 1, usageErr("do-init is internal: --changes-fd needs --upper")
			}
			if (a.UID >= 0) != (a.GID >= 0) || (a.UID >= 0 && a.SeccompFD < 0) {
				return 1, usageErr("do-init is internal: --uid needs --gid and --seccomp-fd")
			}
			a.Command = args
			// The sandbox's stderr is the user's: say it there.
			return doinit.Main(a, os.Stderr), nil
		},
	}
}

// sharedGofer runs `moat gofer --shared`.
func sharedGofer(env *Env, a gofer.SharedArgs, idle, logFD int) (int, error) {
	a.Idle = time.Duration(idle) * time.Second
	if a.Rootfs == "" || a.RootfsID == "" || a.FuseFD < 0 || a.MountFD < 0 || a.ListenFD < 0 || idle <= 0 {
		return 1, usageErr("gofer --shared is internal: it needs --rootfs, --rootfs-id, --fuse-fd, --mount-fd, --listen-fd and --idle")
	}
	l, err := goferLog(env, logFD)
	if err != nil {
		return 1, err
	}
	if err := gofer.SharedMain(a, l); err != nil {
		l.Error("shared gofer: " + err.Error())
		return 1, err
	}
	return 0, nil
}

// goferLog is a gofer's logger: on --log-fd, else nowhere (its stderr is
// boot's log, for a crash only).
func goferLog(env *Env, logFD int) (*slog.Logger, error) {
	var w io.Writer = io.Discard
	if logFD >= 0 {
		w = os.NewFile(uintptr(logFD), "log")
	}
	return log.New(w, env.Config.LogFormat, env.Config.Debug, "gofer")
}
