package benchrt

import (
	"os"
	"sort"
	"strconv"
	"strings"
)

// Proc is one process as /proc shows it.
type Proc struct {
	PID, PPID int
	Comm      string
	Args      []string // command line; [""] when empty (a zombie, a kernel thread)
}

// Procs returns every process in /proc by PID.
func Procs() map[int]Proc {
	ents, _ := os.ReadDir("/proc")
	m := map[int]Proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if l < 0 || r < l {
			continue
		}
		f := strings.Fields(s[r+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
		m[pid] = Proc{PID: pid, PPID: ppid, Comm: s[l+1 : r], Args: args}
	}
	return m
}

// Descendants returns the PIDs of root's descendants in procs, sorted.
func Descendants(procs map[int]Proc, root int) []int {
	kids := map[int][]int{}
	for _, p := range procs {
		kids[p.PPID] = append(kids[p.PPID], p.PID)
	}
	seen := map[int]bool{}
	var out []int
	stack := []int{root}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, k := range kids[p] {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
				stack = append(stack, k)
			}
		}
	}
	sort.Ints(out)
	return out
}

// Subcommand returns the first argument after args[0] that is not a flag (nor a flag's
// value given as --flag=value), e.g. "gofer" for `moat --root=/x gofer --gofer-sync-fd=3`.
func Subcommand(args []string) string {
	for _, a := range args[1:] {
		if a != "" && !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}
