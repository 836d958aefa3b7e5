// Package cli is moat's command line: the global flags, the command table
// (user commands and the internal process roles), errors and exit codes. It
// is the only package that exits the process.
package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/cli/cmd"
	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/container"
	mlog "github.com/moat-sandbox/moat/internal/log"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/rootless"
	"github.com/moat-sandbox/moat/internal/state"
)

// Version and Commit are set at build time with -ldflags -X.
var (
	Version = "0.1.0-dev"
	Commit  = "unknown"
)

// userCommands are what `moat --help` lists.
func userCommands() []*cmd.Command {
	return []*cmd.Command{
		cmd.Create(), cmd.Start(), cmd.Run(), cmd.State(), cmd.List(), cmd.Kill(),
		cmd.Delete(), cmd.Exec(), cmd.Port(), cmd.Ps(), cmd.Pause(), cmd.Resume(), cmd.Update(),
		cmd.Events(), cmd.Features(), cmd.Spec(), cmd.Doctor(), cmd.Do(), cmd.Apply(),
	}
}

// internalCommands are moat's own process roles, started only by moat.
func internalCommands() []*cmd.Command {
	return []*cmd.Command{cmd.Boot(), cmd.Init(), cmd.Gofer(), cmd.Net(), cmd.ExecProxy(), cmd.DoInit(), cmd.Spawner()}
}

// Main runs moat and exits.
func Main(args []string) {
	os.Exit(run(args, os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	procutil.Trace("cli", "main "+strings.Join(args[1:], " "))
	if len(args) > 1 && isInternal(args) {
		// The init helper changes namespaces and credentials per thread and
		// executes the container process from this thread.
		runtime.LockOSThread()
	}
	cfg := config.Default()
	global := flag.NewFlagSet("moat", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	cfg.Register(global)
	var version, help bool
	global.BoolVar(&version, "version", false, "print the version")
	global.BoolVar(&version, "v", false, "print the version")
	global.BoolVar(&help, "help", false, "show help")
	global.BoolVar(&help, "h", false, "show help")
	if err := global.Parse(args[1:]); err != nil {
		return fail(stderr, nil, "moat", flagError(err, "moat", global, nil, args[1:]))
	}
	switch {
	case version:
		fmt.Fprintf(stdout, "moat version %s\ncommit: %s\nspec: %s\n", Version, commit(), specs.Version)
		return 0
	case help || global.NArg() == 0:
		printUsage(stdout, global)
		return boolToCode(!help)
	}
	if err := cfg.Validate(); err != nil {
		return fail(stderr, nil, "moat", err)
	}
	c := lookup(global.Arg(0))
	if c == nil {
		hint := ""
		if near := nearest(global.Arg(0), commandNames()); near != "" {
			hint = ": did you mean " + near + "?"
		}
		return fail(stderr, nil, "moat", fmt.Errorf("unknown command %q%s (see moat --help)", global.Arg(0), hint))
	}
	if c.Name != "init" && c.Name != "boot" {
		// Descriptors this process inherited (from a shim, a shell) reach
		// its children only when handed on explicitly. Init passes the
		// container's on; boot does this itself after its user namespace
		// re-exec.
		if err := procutil.CloseOnExecFrom(3); err != nil {
			return fail(stderr, nil, "moat", err)
		}
	}
	return runCommand(c, &cfg, global, global.Args()[1:], stdout, stderr)
}

func commandNames() []string {
	var names []string
	for _, c := range userCommands() {
		names = append(names, c.Name)
	}
	return names
}

func isInternal(args []string) bool {
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") {
			return a == "init"
		}
	}
	return false
}

func lookup(name string) *cmd.Command {
	for _, c := range append(userCommands(), internalCommands()...) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func runCommand(c *cmd.Command, cfg *config.Config, global *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var help bool
	fs.BoolVar(&help, "help", false, "show help")
	fs.BoolVar(&help, "h", false, "show help")
	if c.Flags != nil {
		c.Flags(fs)
	}
	logger, logFile, err := openLog(cfg, c.Name)
	if err != nil {
		return fail(stderr, nil, c.Name, err)
	}
	if internal(c.Name) {
		// An internal role's stderr may be the container's: its errors
		// travel to its parent as data, never as text on stderr.
		stderr = io.Discard
	}
	if logFile != nil {
		defer logFile.Close()
	}
	if logFile == nil {
		// Without --log the logger writes to stderr, where fail already
		// prints the error: say it once.
		logger = nil
	}
	if err := fs.Parse(args); err != nil {
		return fail(stderr, logger, c.Name, flagError(err, "moat "+c.Name, fs, global, args))
	}
	if help {
		printCommandUsage(stdout, c, fs)
		return 0
	}
	if n := fs.NArg(); n < c.MinArgs || (c.MaxArgs >= 0 && n > c.MaxArgs) {
		return fail(stderr, logger, c.Name, fmt.Errorf("%w: expects %s, got %d argument(s) (see moat %s --help)",
			cmd.ErrUsage, argsSynopsis(c), n, c.Name))
	}
	cmdLog := logger
	if cmdLog == nil {
		cmdLog, _ = mlog.New(stderr, cfg.LogFormat, cfg.Debug, "")
	}
	env := &cmd.Env{Config: cfg, Log: cmdLog, Stdout: stdout, Stderr: stderr}
	env.Runtime = func() (*container.Runtime, error) { return newRuntime(cfg, cmdLog, logFile, stderr) }
	code, err := c.Run(env, fs.Args())
	if err != nil {
		failed := fail(stderr, logger, c.Name, err)
		if code > 1 {
			return code // a command's own status for its failure (moat do: 125)
		}
		return failed
	}
	return code
}

func internal(name string) bool {
	for _, c := range internalCommands() {
		if c.Name == name {
			return true
		}
	}
	return false
}

func argsSynopsis(c *cmd.Command) string {
	if c.Args == "" {
		return "no arguments"
	}
	return c.Args
}

// openLog opens --log (appending) and builds the CLI's logger: to the file
// if given, else to stderr (warnings and errors only unless --debug).
func openLog(cfg *config.Config, role string) (*slog.Logger, *os.File, error) {
	if internal(role) {
		// Internal roles get their log descriptor from their parent.
		return mlog.Discard(), nil, nil
	}
	if cfg.Log == "" {
		l, err := mlog.New(os.Stderr, cfg.LogFormat, cfg.Debug, "")
		return l, nil, err
	}
	f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("--log %s: %w", cfg.Log, err)
	}
	l, err := mlog.New(f, cfg.LogFormat, cfg.Debug, "")
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return l, f, nil
}

func newRuntime(cfg *config.Config, l *slog.Logger, logFile *os.File, stderr io.Writer) (*container.Runtime, error) {
	root := cfg.Root
	if root == "" {
		root = config.DefaultRoot(rootlessRoot(cfg))
	}
	st, err := state.Open(root)
	if err != nil {
		return nil, err
	}
	warn := func(msg string) {
		if logFile != nil {
			l.Warn(msg)
		}
		fmt.Fprintf(stderr, "moat: warning: %s\n", msg)
	}
	return &container.Runtime{Config: cfg, Store: st, Log: l, LogFile: logFile, Warn: warn}, nil
}

// rootlessRoot decides rootless mode for the state root's default: as runc
// does, uid 0 in a user namespace (rootless Podman runs its runtime so) is
// rootless too, and cannot own /run.
func rootlessRoot(cfg *config.Config) bool {
	switch cfg.Rootless {
	case "true":
		return true
	case "false":
		return false
	}
	return os.Geteuid() != 0 || rootless.InUserNS()
}

// fail reports err on stderr and, with --log, as an error line in the log
// (where containerd's shim and conmon look for it), and returns exit code 1.
func fail(stderr io.Writer, l *slog.Logger, name string, err error) int {
	if l != nil {
		l.Error(err.Error())
	}
	if name == "moat" {
		fmt.Fprintf(stderr, "moat: %v\n", err)
	} else {
		fmt.Fprintf(stderr, "moat %s: %v\n", name, err)
	}
	return 1
}

// flagError rewrites the flag package's messages into moat's. fs is where
// the flag was looked for (args, what it parsed); global, for a command's
// flags, the global ones, which go before the command.
func flagError(err error, where string, fs, global *flag.FlagSet, args []string) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "flag provided but not defined: ")
	if !ok {
		return fmt.Errorf("%w: %s (see %s --help)", cmd.ErrUsage, msg, where)
	}
	name = strings.TrimLeft(name, "-")
	if hint, dead := config.Graveyard(name); dead {
		return fmt.Errorf("%w: flag --%s was removed: %s", cmd.ErrUsage, name, hint)
	}
	if global != nil && global.Lookup(name) != nil {
		return fmt.Errorf("%w: --%s is a global flag: it goes before the command (moat %s %s ...)",
			cmd.ErrUsage, name, flagToken(args, global.Lookup(name)), fs.Name())
	}
	hint := ""
	if near := nearest(name, flagNames(fs)); near != "" {
		hint = ": did you mean --" + near + "?"
	} else if near = nearest(name, flagNames(global)); near != "" {
		hint = ": did you mean the global flag --" + near + " (it goes before the command)?"
	}
	return fmt.Errorf("%w: unknown flag --%s%s (see %s --help)", cmd.ErrUsage, name, hint, where)
}

// flagToken is how f was written in args ("--network=sandbox", "--root
// DIR"), for a hint that shows it moved.
func flagToken(args []string, f *flag.Flag) string {
	b, _ := f.Value.(interface{ IsBoolFlag() bool })
	for i, a := range args {
		n := strings.TrimLeft(a, "-")
		if strings.HasPrefix(n, f.Name+"=") || n == f.Name && (b != nil && b.IsBoolFlag() || i+1 == len(args)) {
			return a
		}
		if n == f.Name {
			return a + " " + args[i+1]
		}
	}
	return "--" + f.Name
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 {
				names = append(names, f.Name)
			}
		})
	}
	return names
}

// nearest names the candidates nearest to typed, at most two edits away
// (fewer than typed has letters), else the only one typed begins; "" if
// none is near.
func nearest(typed string, candidates []string) string {
	var best, starts []string
	bestDist := min(3, len(typed))
	for _, c := range candidates {
		switch d := editDistance(typed, c); {
		case d < bestDist:
			best, bestDist = []string{c}, d
		case d == bestDist && best != nil:
			best = append(best, c)
		}
		if len(typed) >= 3 && strings.HasPrefix(c, typed) {
			starts = append(starts, c)
		}
	}
	if best == nil && len(starts) == 1 {
		best = starts
	}
	return strings.Join(best, " or ")
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// commit is the -ldflags commit, else the one the Go toolchain recorded in
// the binary (a plain `go build` in a git checkout), with "-dirty" for
// uncommitted changes; Podman shows it in `podman info`.
func commit() string {
	if Commit != "unknown" && Commit != "" {
		return Commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Commit
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return Commit
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

func boolToCode(failed bool) int {
	if failed {
		return 1
	}
	return 0
}

func printUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintf(w, "moat: a rootless-first OCI container runtime with a sandboxed file server\n\n")
	fmt.Fprintf(w, "Usage: moat [global flags] COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, c := range userCommands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Short)
	}
	fmt.Fprintf(w, "\nGlobal flags:\n")
	printFlags(w, global)
	fmt.Fprintf(w, "\nRun 'moat COMMAND --help' for a command's flags.\n")
}

func printCommandUsage(w io.Writer, c *cmd.Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: moat %s [flags] %s\n\n%s\n", c.Name, c.Args, c.Short)
	if c.Long != "" {
		fmt.Fprintf(w, "\n%s\n", c.Long)
	}
	fmt.Fprintf(w, "\nFlags:\n")
	printFlags(w, fs)
}

// printFlags lists fs's flags, one line per flag with its aliases
// ("-b, --bundle"), names in one column and help in the next.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	type entry struct {
		short, long []string
		f           *flag.Flag
	}
	var entries []*entry
	fs.VisitAll(func(f *flag.Flag) {
		var e *entry
		for _, o := range entries {
			if o.f.Value == f.Value && o.f.Usage == f.Usage {
				e = o
			}
		}
		if e == nil {
			e = &entry{f: f}
			entries = append(entries, e)
		}
		if len(f.Name) == 1 {
			e.short = append(e.short, "-"+f.Name)
		} else {
			e.long = append(e.long, "--"+f.Name)
		}
	})
	labels, width := make([]string, len(entries)), 0
	for i, e := range entries {
		short := strings.Join(e.short, ", ")
		switch {
		case short == "":
			short = "    "
		case len(e.long) > 0:
			short += ", "
		}
		labels[i] = short + strings.Join(e.long, ", ")
		width = max(width, len(labels[i]))
	}
	var lines []string
	for i, e := range entries {
		def := ""
		if d := e.f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
			def = fmt.Sprintf(" (default %s)", d)
		}
		lines = append(lines, fmt.Sprintf("  %-*s  %s%s", width, labels[i], e.f.Usage, def))
	}
	sort.Slice(lines, func(i, j int) bool {
		return strings.TrimLeft(lines[i], " -,") < strings.TrimLeft(lines[j], " -,")
	})
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}
