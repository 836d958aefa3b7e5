package cmd

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/moat-sandbox/moat/internal/do"
	"github.com/moat-sandbox/moat/internal/doinit"
)

// exitDoFailed is `moat do`'s status when moat, not the command, failed
// (Docker's and Podman's convention).
const exitDoFailed = 125

// Do is `moat do [flags] [--] COMMAND [ARG...]`.
func Do() *Command {
	var f do.Options
	var rw, ro, hide, egress, egressDomain, publish stringList
	var profile string
	var fs *flag.FlagSet
	return &Command{
		Name: "do", Args: "[--] COMMAND [ARG...]", MinArgs: 1, MaxArgs: -1,
		Short: "run a host command in a fresh sandbox: host files read-only under a memory overlay, no network",
		Flags: func(set *flag.FlagSet) {
			fs = set
			fs.Var(&rw, "rw", "serve this host path read-write (repeatable; --rw . for the current directory)")
			fs.Var(&ro, "ro", "serve this host path read-only, even under a hidden parent (repeatable)")
			fs.Var(&hide, "hide", "replace this path by an empty directory or file (repeatable)")
			fs.BoolVar(&f.NoDefaultHides, "no-default-hides", false, "do not hide ~/.ssh, ~/.gnupg, ~/.aws, ~/.config/gcloud, ~/.docker, ~/.netrc, ~/.kube, moat's state and /run/user/* (says what it leaves visible)")
			fs.BoolVar(&f.Root, "root", false, "run as uid 0 inside (the caller outside) instead of the caller's uid")
			fs.StringVar(&f.Cwd, "cwd", "", "working directory inside (default: the current directory)")
			fs.StringVar(&f.Network, "network", "", "none (default: loopback only), sandbox (user-mode network; --egress, --egress-domain, --publish) or host (no network isolation)")
			fs.Var(&egress, "egress", "sandbox network: allow=CIDR[:ports],deny=CIDR[:ports],... (repeatable)")
			fs.Var(&egressDomain, "egress-domain", "sandbox network: allow=NAME,*.NAME,... only these names are reachable (repeatable)")
			fs.Var(&publish, "publish", "sandbox network: [hostIP:]hostPort:containerPort[/tcp|udp] (repeatable)")
			fs.StringVar(&f.Memory, "memory", "", "memory limit (bytes, or k/m/g suffix)")
			fs.StringVar(&f.CPUs, "cpus", "", "CPU limit, in CPUs (e.g. 1.5)")
			fs.Int64Var(&f.Pids, "pids", 0, "limit on the number of processes (and threads) the command may run")
			fs.StringVar(&f.Timeout, "timeout", "", "kill the sandbox after this long (e.g. 30s, 5m); exit status 124")
			fs.StringVar(&f.Seccomp, "seccomp", "", "system call filter: default (an allowlist; no nested namespaces, io_uring, bpf, ptrace, keyring, TIOCSTI), none, or an OCI seccomp profile JSON file")
			fs.BoolVar(&f.DryRun, "dry-run", false, "print the generated OCI spec and run nothing")
			fs.BoolVar(&f.Changes, "changes", false, "after the command, list on stderr what it created, modified and deleted outside --rw paths")
			fs.StringVar(&f.Format, "format", "", "format of --changes: text (default) or json")
			fs.StringVar(&f.KeepChanges, "keep-changes", "", "save the changes below the current directory to this new directory (a tree and manifest.json) for moat apply")
			fs.StringVar(&profile, "profile", "", "file with the same settings, named as the flags (TOML if FILE ends in .toml, else JSON); flags given override it, lists add")
		},
		Run: func(env *Env, args []string) (int, error) {
			f.RW, f.RO, f.Hide = rw, ro, hide
			f.Egress, f.EgressDomain, f.Publish = egress, egressDomain, publish
			f.Args, f.Env = args, os.Environ()
			f.Tty = doinit.IsTerminal(0) && doinit.IsTerminal(1)
			exe, err := os.Executable()
			if err != nil {
				return exitDoFailed, fmt.Errorf("find moat's executable: %w", err)
			}
			f.Exe = exe
			o := &f
			if profile != "" {
				if o, err = do.LoadProfile(profile); err != nil {
					return exitDoFailed, err
				}
				set := map[string]bool{}
				fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
				o.Merge(&f, set)
			}
			return runDo(env, o)
		},
	}
}

func runDo(env *Env, o *do.Options) (int, error) {
	rt, err := env.Runtime()
	if err != nil {
		return exitDoFailed, err
	}
	h := do.CurrentHost(rt.Store.Root)
	empty := &do.EmptyFiles{Root: rt.Store.Root}
	defer empty.Remove()
	h.EmptyFile = empty.Make
	p, err := do.Generate(o, h)
	if err != nil {
		return exitDoFailed, err
	}
	if len(p.Unhidden) > 0 {
		fmt.Fprintf(env.Stderr, "moat do: --no-default-hides: not hiding %s\n", strings.Join(p.Unhidden, ", "))
	}
	if err := p.Configure(env.Config, o); err != nil {
		return exitDoFailed, err
	}
	if o.DryRun {
		data, err := json.MarshalIndent(p.Spec, "", "\t")
		if err != nil {
			return exitDoFailed, err
		}
		fmt.Fprintln(env.Stdout, string(data))
		return 0, nil
	}
	code, err := do.Run(rt, p, env.Stderr)
	if err != nil {
		return exitDoFailed, err
	}
	return code, nil
}
