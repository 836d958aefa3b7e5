// Command probe is a small static busybox-style multi-call binary used as the
// container process by moat's end-to-end tests (in the spirit of crun's
// tests/init.c or youki's runtimetest).
//
// It dispatches on the basename of argv[0] when that names a command (so a
// rootfs can contain /bin/true, /bin/echo, ... as symlinks or copies of it),
// otherwise on argv[1]:
//
//	probe CMD ARGS...
//
// Output is meant for machines: structured results are printed as one JSON
// object per line on stdout. Errors go to stderr with a non-zero exit status
// (1 for a failed command, 2 for a usage error, 127 for an unknown command).
// Run "probe help" for the list of commands.
//
// Build it fully static with:
//
//	CGO_ENABLED=0 go build -o /tmp/probe ./test/probe

// The runtime's cgroup-aware GOMAXPROCS (Go >= 1.25) keeps cgroup files open,
// which would show up in "fds" and "listenfds"; with this setting they are
// closed again during start-up.
//
//go:debug containermaxprocs=0
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// command is one entry of the dispatch table.
type command struct {
	usage string // argument synopsis, shown by help
	help  string // one-line description, shown by help
	min   int    // minimum number of arguments
	max   int    // maximum number of arguments, -1 for unlimited
	run   func(args []string) error
}

// commands is the dispatch table; it is filled in init to avoid an
// initialization cycle through cmdHelp.
var commands map[string]command

func init() {
	commands = map[string]command{
		// basic
		"true":     {"", "exit 0", 0, -1, func([]string) error { return nil }},
		"false":    {"", "exit 1", 0, -1, func([]string) error { return exitCode(1) }},
		"exit":     {"N", "exit with status N", 1, 1, cmdExit},
		"sleep":    {"SECONDS", "sleep (fractions allowed); default signal dispositions", 1, 1, cmdSleep},
		"hold":     {"SECONDS", "like sleep, but print 'ready' first", 1, 1, cmdHold},
		"readloop": {"FILE SECONDS", "print 'ready', then read FILE over and over; print the first error and exit 1, or exit 0 after SECONDS", 2, 2, cmdReadLoop},
		"echo":     {"ARGS...", "print ARGS space-joined", 0, -1, cmdEcho},
		"cat":      {"[FILE...]", "copy files (or stdin) to stdout", 0, -1, cmdCat},
		"write":    {"FILE CONTENT", "create/truncate FILE (0644) with CONTENT", 2, 2, cmdWrite},
		"append":   {"FILE CONTENT", "append CONTENT to FILE (created 0644)", 2, 2, cmdAppend},
		"ls":       {"[DIR]", "entry names, sorted, one per line", 0, 1, cmdLs},
		"mkdir":    {"PATH", "create directory (0755)", 1, 1, cmdMkdir},
		"rm":       {"PATH", "remove file or empty directory", 1, 1, cmdRm},
		"help":     {"", "this list", 0, -1, cmdHelp},

		// process information (info.go)
		"env":         {"", "environment, one per line, as is", 0, 0, cmdEnv},
		"id":          {"", `{"uid","gid","euid","egid","groups"}`, 0, 0, cmdID},
		"cwd":         {"", "working directory (getcwd)", 0, 0, cmdCwd},
		"pid":         {"", `{"pid","ppid"}`, 0, 0, cmdPid},
		"hostname":    {"", `{"hostname","domainname"} from uname`, 0, 0, cmdHostname},
		"umask":       {"", `{"umask":"0022"}`, 0, 0, cmdUmask},
		"caps":        {"", `{"inh","prm","eff","bnd","amb","names":{SET:[CAP_...]}}`, 0, 0, cmdCaps},
		"status":      {"", `{"nnp","seccomp","seccomp_filters"} from /proc/self/status`, 0, 0, cmdStatus},
		"fds":         {"", `{"fds":{"N":"target"}} open file descriptors`, 0, 0, cmdFds},
		"mounts":      {"", "/proc/self/mountinfo as is", 0, 0, cmdMounts},
		"stat":        {"PATH", `lstat: {"mode","type","uid","gid","size","rdev_major","rdev_minor"}`, 1, 1, cmdStat},
		"readlink":    {"PATH", "symlink target", 1, 1, cmdReadlink},
		"rlimits":     {"", `{"RLIMIT_NOFILE":[soft,hard],...} (all 16)`, 0, 0, cmdRlimits},
		"oomscore":    {"", "content of /proc/self/oom_score_adj", 0, 0, cmdOomScore},
		"sysctl":      {"KEY", "value of /proc/sys/KEY (dots are path separators)", 1, 1, cmdSysctl},
		"personality": {"", `{"personality":N}`, 0, 0, cmdPersonality},
		"tty":         {"", `{"stdin","stdout","stderr","rows","cols","ctty","sid","pgid"}`, 0, 0, cmdTty},
		"listenfds":   {"", `{"LISTEN_FDS","LISTEN_PID","LISTEN_FDNAMES","pid","fds":[N>=3]}`, 0, 0, cmdListenFds},

		// raw system calls and file system probes (sys.go)
		"syscall": {"NAME|NR [ARG...]", `raw syscall: {"ret","errno","error","name"}, always exit 0; ARG: int (0x.. hex, 0.. octal), @buf, str:TEXT or TEXT`, 1, 7, cmdSyscall},
		"open":    {"PATH FLAGS", `open(2) with FLAGS like rdonly, wronly|trunc: {"ok","errno","error"}`, 2, 2, cmdOpen},
		"try":     {"OP ARGS...", `attempt OP, report {"ok","errno","error"[,"data"]}; "probe help try" lists ops`, 1, -1, cmdTry},

		// processes and signals (proc.go)
		"signals": {"[--ready FILE]", "print 'ready', then each received signal name (SIGPROF, 32-34 are not reported); exits 0 on SIGTERM or after 60s", 0, 2, cmdSignals},
		"exitsig": {"SIG", "kill itself with SIG (name or number) after resetting it to default", 1, 1, cmdExitSig},
		"spawn":   {"N CMD [ARGS...]", `start N copies of "probe CMD ARGS", print {"pids":[...]}, then {"pid","exit","signal"} per child`, 2, -1, cmdSpawn},
		// network (net.go)
		"dial":  {"HOST:PORT [SECONDS]", `TCP connect, read to EOF: {"ok","errno","error","name","data","ms"}, always exit 0`, 1, 2, cmdDial},
		"conns": {"HOST:PORT N", `N connections in a row (connect, read to EOF, close): {"ok":N,"failed":N,"error","ms"}`, 2, 2, cmdConns},
		"udp":   {"HOST:PORT MSG", `send MSG, wait 3s for a reply: {"ok","errno","error","data","ms"}, always exit 0`, 2, 2, cmdUDP},
		"dns":   {"SERVER NAME A|AAAA [tcp]", `one query: {"ok","rcode","answers":[{"type","ttl","data"}],"error"}`, 3, 4, cmdDNS},
		"flood": {"udp|dns|tcp HOST:PORT N [SIZE]", `udp: one SIZE-byte datagram from each of N new sockets; dns: N queries from one socket, answers read for 1s; tcp: N connections at once, each writing until blocked for 3s: {"sent","answers","bytes","error","ms"}`, 3, 4, cmdFlood},
		"serve": {"PORT SECONDS", "print 'ready', answer TCP connections and UDP datagrams on PORT with 'hello PEER'", 2, 2, cmdServe},

		"run": {"CMD [ARGS...]", `execve CMD (PATH lookup) with the current env; on failure {"ok":false,"errno","error"}, exit 126/127`, 1, -1, cmdRun},
	}
}

// exitCode is an error that makes the probe exit silently with that status.
type exitCode int

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// usageError makes the probe exit with status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func usagef(format string, a ...any) error { return usageError(fmt.Sprintf(format, a...)) }

func main() {
	name, args := pickCommand(os.Args)
	os.Exit(dispatch(name, args))
}

// pickCommand selects the command from argv[0] or argv[1].
func pickCommand(argv []string) (string, []string) {
	if len(argv) > 0 {
		base := filepath.Base(argv[0])
		if _, ok := commands[base]; ok && base != "probe" {
			return base, argv[1:]
		}
	}
	if len(argv) < 2 {
		return "", nil
	}
	return argv[1], argv[2:]
}

func dispatch(name string, args []string) int {
	if name == "" {
		fmt.Fprintln(os.Stderr, "usage: probe CMD [ARGS...] (see: probe help)")
		return 2
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "probe: %s: unknown command (see: probe help)\n", name)
		return 127
	}
	if len(args) < c.min || (c.max >= 0 && len(args) > c.max) {
		fmt.Fprintf(os.Stderr, "usage: probe %s %s\n", name, c.usage)
		return 2
	}
	err := c.run(args)
	var code exitCode
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "probe %s: %v\nusage: probe %s %s\n", name, err, name, c.usage)
		return 2
	default:
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", name, err)
		return 1
	}
}

func cmdHelp(args []string) error {
	if len(args) > 0 && args[0] == "try" {
		for _, n := range sortedKeys(tryOps) {
			fmt.Printf("try %s %s\n", n, tryOps[n].usage)
		}
		return nil
	}
	fmt.Println("usage: probe CMD [ARGS...]   (or argv[0] basename = CMD)")
	names := sortedKeys(commands)
	for _, n := range names {
		c := commands[n]
		fmt.Printf("  %-12s %-18s %s\n", n, c.usage, c.help)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// emit prints v as a single line of JSON on stdout.
func emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// errnoResult is the common {"ok","errno","error"} report.
type errnoResult struct {
	OK    bool    `json:"ok"`
	Errno int     `json:"errno"`
	Error string  `json:"error"`
	Name  string  `json:"name,omitempty"` // symbolic errno, e.g. EPERM
	Data  *string `json:"data,omitempty"`
}

func resultOf(err error) errnoResult {
	if err == nil {
		return errnoResult{OK: true}
	}
	r := errnoResult{Error: err.Error(), Errno: -1}
	var e syscall.Errno
	if errors.As(err, &e) {
		r.Errno = int(e)
		r.Error = e.Error()
		r.Name = unix.ErrnoName(e)
	}
	return r
}

// parseSeconds parses a (fractional) number of seconds.
func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, usagef("bad number of seconds %q", s)
	}
	if f*1e9 >= float64(1<<63-1) {
		return time.Duration(1<<63 - 1), nil
	}
	return time.Duration(f * 1e9), nil
}

func cmdExit(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return usagef("bad exit status %q", args[0])
	}
	return exitCode(n)
}

func cmdSleep(args []string) error {
	d, err := parseSeconds(args[0])
	if err != nil {
		return err
	}
	defaultSignals()
	time.Sleep(d)
	return nil
}

func cmdHold(args []string) error {
	d, err := parseSeconds(args[0])
	if err != nil {
		return err
	}
	defaultSignals()
	fmt.Println("ready")
	time.Sleep(d)
	return nil
}

func cmdReadLoop(args []string) error {
	d, err := parseSeconds(args[1])
	if err != nil {
		return err
	}
	fmt.Println("ready")
	deadline := time.Now().Add(d)
	for n := 0; time.Now().Before(deadline); n++ {
		if _, err := os.ReadFile(args[0]); err != nil {
			fmt.Printf("error after %d reads: %v\n", n, err)
			os.Exit(1)
		}
	}
	return nil
}

func cmdEcho(args []string) error {
	_, err := fmt.Println(strings.Join(args, " "))
	return err
}

func cmdCat(args []string) error {
	if len(args) == 0 {
		args = []string{"-"}
	}
	for _, name := range args {
		var r io.Reader = os.Stdin
		if name != "-" {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			r = f
		}
		if _, err := io.Copy(os.Stdout, r); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path, content string, flag int) error {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cmdWrite(args []string) error {
	return writeFile(args[0], args[1], os.O_CREATE|os.O_TRUNC|os.O_WRONLY)
}

func cmdAppend(args []string) error {
	return writeFile(args[0], args[1], os.O_CREATE|os.O_APPEND|os.O_WRONLY)
}

func cmdLs(args []string) error {
	dir := "."
	if len(args) > 0 {
		dir = args[0]
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	for _, e := range entries {
		fmt.Println(e.Name())
	}
	return nil
}

func cmdMkdir(args []string) error { return os.Mkdir(args[0], 0o755) }

func cmdRm(args []string) error { return os.Remove(args[0]) }
