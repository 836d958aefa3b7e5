// Package cmd holds moat's subcommands, one thin file each: a command parses
// its flags into an options struct and calls the library (package container
// for the lifecycle, boot/initproc for the internal process roles). The
// command table and exit handling live in package cli.
package cmd

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/container"
)

// Env is what every command gets from the CLI.
type Env struct {
	Config *config.Config
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	// Runtime opens the state root and returns the lifecycle API.
	Runtime func() (*container.Runtime, error)
}

// Command is one subcommand.
type Command struct {
	Name  string
	Args  string // synopsis of the positional arguments
	Short string
	Long  string // more for `moat COMMAND --help` (optional)
	// MinArgs and MaxArgs bound the positional arguments (-1: no bound).
	MinArgs, MaxArgs int
	// Flags registers the command's flags; Run gets the positional args.
	Flags func(fs *flag.FlagSet)
	Run   func(env *Env, args []string) (exitCode int, err error)
}

// ErrUsage marks a command-line mistake; the CLI adds a pointer to --help.
var ErrUsage = errors.New("usage")

// usageErr formats a command-line error.
func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, a...))
}

// stringList is a repeatable string flag (--env A=1 --env B=2).
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// boolAlias registers a bool flag under several names (runc's short forms).
func boolAlias(fs *flag.FlagSet, p *bool, usage string, names ...string) {
	for _, n := range names {
		fs.BoolVar(p, n, *p, usage)
	}
}

// stringAlias registers a string flag under several names.
func stringAlias(fs *flag.FlagSet, p *string, usage string, names ...string) {
	for _, n := range names {
		fs.StringVar(p, n, *p, usage)
	}
}

// ok is the (0, err) return of commands without an exit status of their own.
func ok(err error) (int, error) {
	if err != nil {
		return 1, err
	}
	return 0, nil
}
