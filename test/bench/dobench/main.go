// Command dobench measures `moat do` against the host, bubblewrap and
// `runsc do`: the start-up of `true` in each sandbox, then real tool
// workloads run with the current directory writable (`go build` of a small
// module, `python3 -m compileall` of a copied tree, `git status` in a
// repository), and the syscall surface left by moat do's default seccomp
// profile (../shared/tools/surface.c, built static with gcc).
//
// Usage (as root; `make bench-do` is the usual wrapper):
//
//	go run ./test/bench/dobench [-moat bin/moat] [-n 30] [-wn 5] [-repo DIR] [-surface FILE.c]
//
// Runs are interleaved round-robin so that noise hits every runner alike;
// each table prints p50 and p90 wall times. A runner whose first run fails
// is reported once and skipped. Stdlib only.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// runner is one way of running a command: its argv prefix, run in dir.
type runner struct {
	name   string
	prefix []string
	failed bool
}

func main() {
	moat := flag.String("moat", "bin/moat", "the moat binary")
	n := flag.Int("n", 30, "rounds of `true`")
	wn := flag.Int("wn", 5, "rounds of each workload")
	repo := flag.String("repo", ".", "git repository for `git status`")
	surface := flag.String("surface", "../shared/tools/surface.c", "surface.c (skipped if absent or gcc is missing)")
	flag.Parse()
	moatAbs, err := filepath.Abs(*moat)
	if err != nil {
		fatal(err)
	}
	repoAbs, err := filepath.Abs(*repo)
	if err != nil {
		fatal(err)
	}
	work, err := os.MkdirTemp("/var/tmp", "dobench-")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)

	fmt.Printf("== start-up: `true` (%d interleaved rounds)\n", *n)
	table([]*runner{
		{name: "moat do", prefix: []string{moatAbs, "do", "--"}},
		{name: "bwrap", prefix: []string{"bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all", "--"}},
		{name: "runsc do", prefix: []string{"runsc", "--rootless", "--network=none", "do"}},
	}, []string{"true"}, "", *n)

	mod := filepath.Join(work, "gomod")
	must(os.MkdirAll(mod, 0o755))
	must(os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module bench\n\ngo 1.22\n"), 0o644))
	must(os.WriteFile(filepath.Join(mod, "main.go"), []byte(mainGo), 0o644))
	py := filepath.Join(work, "py")
	if out, err := exec.Command("cp", "-r", pythonTree(), py).CombinedOutput(); err != nil {
		fatal(fmt.Errorf("copy a python tree: %v %s", err, out))
	}
	gocache := filepath.Join(work, "gocache")
	workloads := []struct {
		name string
		dir  string
		args []string
	}{
		{"go build", mod, []string{"env", "GOCACHE=" + gocache, "GOFLAGS=-mod=mod", "go", "build", "-o", "/dev/null", "."}},
		{"python3 -m compileall", py, []string{"python3", "-m", "compileall", "-q", "-f", "."}},
		{"git status", repoAbs, []string{"git", "status", "--short"}},
	}
	for _, w := range workloads {
		fmt.Printf("\n== %s in %s (%d interleaved rounds, the directory writable)\n", w.name, w.dir, *wn)
		table([]*runner{
			{name: "host", prefix: nil},
			{name: "moat do --rw .", prefix: []string{moatAbs, "do", "--rw", w.dir, "--rw", work, "--"}},
			{name: "bwrap", prefix: []string{"bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind", w.dir, w.dir, "--bind", work, work, "--unshare-all", "--"}},
		}, w.args, w.dir, *wn)
	}
	fmt.Println()
	reportSurface(moatAbs, *surface, work)
}

// table runs args under every runner n times, interleaved, and prints
// p50/p90.
func table(rs []*runner, args []string, dir string, n int) {
	times := make([][]time.Duration, len(rs))
	for round := 0; round < n+1; round++ { // round 0 warms up
		for k := range rs {
			i := (round + k) % len(rs)
			r := rs[i]
			if r.failed {
				continue
			}
			d, err := timed(append(append([]string{}, r.prefix...), args...), dir)
			if err != nil {
				fmt.Printf("  %-16s failed: %v (skipped)\n", r.name, err)
				r.failed = true
				continue
			}
			if round > 0 {
				times[i] = append(times[i], d)
			}
		}
	}
	fmt.Printf("  %-16s %10s %10s\n", "", "p50", "p90")
	for i, r := range rs {
		if r.failed || len(times[i]) == 0 {
			continue
		}
		fmt.Printf("  %-16s %10s %10s\n", r.name, pct(times[i], 50), pct(times[i], 90))
	}
}

func timed(argv []string, dir string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(lastLine(out.String())))
	}
	return d, nil
}

func pct(ds []time.Duration, p int) string {
	s := append([]time.Duration{}, ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(100 * time.Microsecond).String()
}

// reportSurface builds surface.c static and counts the syscalls reachable
// in moat do, without seccomp and with the default profile.
func reportSurface(moat, src, work string) {
	bin := filepath.Join(work, "surface")
	if out, err := exec.Command("gcc", "-O2", "-static", "-o", bin, src).CombinedOutput(); err != nil {
		fmt.Printf("== syscall surface: skipped (gcc -static %s: %v %s)\n", src, err, lastLine(string(out)))
		return
	}
	fmt.Println("== syscall surface (surface.c: reachable = the kernel looked at the arguments)")
	for _, c := range []struct{ name, seccomp string }{{"moat do (default profile)", "default"}, {"moat do --seccomp=none", "none"}} {
		out, err := exec.Command(moat, "do", "--seccomp="+c.seccomp, "--ro", work, "--", bin).Output()
		line := strings.TrimSpace(string(out))
		if err != nil {
			line = fmt.Sprintf("failed: %v", err)
		}
		fmt.Printf("  %-28s %s\n", c.name, line)
	}
	if out, err := exec.Command(bin).Output(); err == nil {
		fmt.Printf("  %-28s %s\n", "host", strings.TrimSpace(string(out)))
	}
}

// pythonTree is a directory of python sources to compile: the standard
// library's json and email packages.
func pythonTree() string {
	out, err := exec.Command("python3", "-c", "import email, os; print(os.path.dirname(email.__file__))").Output()
	if err != nil {
		fatal(fmt.Errorf("python3: %v", err))
	}
	return strings.TrimSpace(string(out))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func must(err error) {
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "dobench:", err)
	os.Exit(1)
}

const mainGo = `package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
)

func main() {
	_ = http.DefaultClient
	json.NewEncoder(os.Stdout).Encode(map[string]int{"a": 1})
	fmt.Println("bench")
}
`
