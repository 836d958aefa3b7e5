package cmd

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Ps is `moat ps`.
func Ps() *Command {
	format := "table"
	return &Command{
		Name: "ps", Args: "CONTAINER-ID [-- PS-ARGS...]", Short: "list the processes of a container",
		MinArgs: 1, MaxArgs: -1,
		Flags: func(fs *flag.FlagSet) {
			stringAlias(fs, &format, "output format: table or json (host pids)", "format", "f")
		},
		Run: func(env *Env, args []string) (int, error) {
			if format != "table" && format != "json" {
				return 1, usageErr("--format %q: want table or json", format)
			}
			rt, err := env.Runtime()
			if err != nil {
				return 1, err
			}
			pids, err := rt.Pids(args[0])
			if err != nil {
				return 1, err
			}
			if format == "json" {
				return ok(json.NewEncoder(env.Stdout).Encode(pids))
			}
			psArgs := args[1:]
			if len(psArgs) > 0 && psArgs[0] == "--" {
				psArgs = psArgs[1:]
			}
			if len(psArgs) == 0 {
				psArgs = []string{"-ef"}
			}
			return ok(psTable(env, pids, psArgs))
		},
	}
}

// psTable runs ps(1) and keeps the header and the container's lines.
func psTable(env *Env, pids []int, psArgs []string) error {
	out, err := exec.Command("ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	// ps prints whole command lines when not on a terminal: a host
	// process's may be longer than the Scanner's default 64 KiB, and the
	// lines after it would be dropped.
	sc.Buffer(nil, len(out)+1)
	if !sc.Scan() {
		return fmt.Errorf("ps printed nothing")
	}
	header := sc.Text()
	col := -1
	for i, h := range strings.Fields(header) {
		if h == "PID" {
			col = i
		}
	}
	if col < 0 {
		return fmt.Errorf("ps output has no PID column")
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	fmt.Fprintln(env.Stdout, header)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) <= col {
			continue
		}
		if pid, err := strconv.Atoi(f[col]); err == nil && want[pid] {
			fmt.Fprintln(env.Stdout, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the output of ps: %w", err)
	}
	return nil
}
