// Command runbench measures OCI runtimes: the wall time of `RUNTIME run <id>` for a
// container running /bin/true, the wall time of `RUNTIME exec <id> /bin/true` in a started
// container (-exec), and the idle memory a runtime keeps alive next to a
// started container (`create` + `start` of /bin/sleep 30).
//
// Usage (as root; see scripts/bench-run.sh for the usual wrapper):
//
//	go run ./test/bench/runbench [-n 50] [-warmup 3] [-runtimes "moat=bin/moat,runc,crun,runsc=runsc --network=none"]
//	                             [-busybox /bin/busybox] [-true PATH] [-rss=true] [-settle 1s] [-keep]
//
// -runtimes (default: $RUNTIMES, else bin/moat if present, runc, crun, "runsc --network=none") is a
// comma-separated list of [label=]command [global flags...]. A runtime whose first run
// fails is reported once and skipped. Runs are interleaved round-robin (each round
// starts with the next runtime) so that noise hits all runtimes alike.
//
// The bundle is built in a temporary directory: a rootfs holding a static busybox with
// applet symlinks (or -true PATH copied as /bin/true), config.json from `runc spec`
// (or another runtime's `spec`) with terminal=false and args ["/bin/true"].
//
// Idle memory: after `start`, runbench (a child subreaper, so every process a runtime
// leaves behind is its descendant) sums Rss and Pss (/proc/PID/smaps_rollup) of every
// process left except the container's own process (comm "sleep", reported separately),
// plus the --pid-file process and its descendants. For runc/crun that is nothing; for
// runsc it is the sandbox and gofer; for moat, `moat boot` and its helpers.
//
// Stdlib only (its shared runtime plumbing, test/bench/benchrt, too): this command lives in
// the moat module but must not pull in dependencies.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moat-sandbox/moat/test/bench/benchrt"
)

// reg removes every container created, and the work directory (unless -keep), on exit,
// on error and on SIGINT/SIGTERM.
var reg = &benchrt.Registry{Name: "runbench", DeleteTimeout: 15 * time.Second}

func cleanupAll() {
	reg.CleanupAll()
	reapOrphans()
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "runbench: "+format+"\n", a...)
	cleanupAll()
	os.Exit(1)
}

// ---------------------------------------------------------------------------
// Bundle preparation.

// makeRootfs fills dir/bin with busybox (+ applet symlinks) and/or trueBin as /bin/true.
// It reports whether /bin/sleep exists (needed for the idle-memory measurement).
func makeRootfs(dir, busybox, trueBin string) (haveSleep bool, err error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return false, err
	}
	if busybox != "" {
		if !benchrt.IsStaticELF(busybox) {
			return false, fmt.Errorf("%s is not a static binary (install busybox-static or pass -true)", busybox)
		}
		if err := benchrt.CopyFile(busybox, filepath.Join(bin, "busybox"), 0o755); err != nil {
			return false, err
		}
		out, err := exec.Command(busybox, "--list").Output()
		if err != nil {
			return false, fmt.Errorf("%s --list: %v", busybox, err)
		}
		for _, a := range strings.Fields(string(out)) {
			if a == "busybox" || strings.Contains(a, "/") {
				continue
			}
			if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil && !os.IsExist(err) {
				return false, err
			}
		}
		haveSleep = true
	}
	if trueBin != "" {
		if !benchrt.IsStaticELF(trueBin) {
			return false, fmt.Errorf("%s is not a static binary", trueBin)
		}
		_ = os.Remove(filepath.Join(bin, "true"))
		if err := benchrt.CopyFile(trueBin, filepath.Join(bin, "true"), 0o755); err != nil {
			return false, err
		}
	}
	if _, err := os.Lstat(filepath.Join(bin, "true")); err != nil {
		return false, errors.New("rootfs has no /bin/true: pass -busybox or -true")
	}
	return haveSleep, nil
}

// writeBundle writes dir/config.json: base running args without a terminal, root rootfs.
func writeBundle(dir, rootfs string, base map[string]any, args []string) error {
	m, err := benchrt.WithArgs(base, args)
	if err != nil {
		return err
	}
	root, _ := m["root"].(map[string]any)
	if root == nil {
		root = map[string]any{}
		m["root"] = root
	}
	root["path"] = rootfs
	return benchrt.WriteConfig(dir, m)
}

// ---------------------------------------------------------------------------
// Latency.

var devNull *os.File

// runOnce runs `RUNTIME run --bundle B id` and returns its wall time.
func runOnce(rt *benchrt.Runtime, bundle, id string) (time.Duration, error) {
	errf, err := os.CreateTemp("", "runbench-stderr")
	if err != nil {
		return 0, err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	c := rt.Cmd("run", "--bundle", bundle, id)
	c.Stdin, c.Stdout, c.Stderr = devNull, devNull, errf
	reg.Track(rt, id)
	t0 := time.Now()
	err = c.Run()
	d := time.Since(t0)
	if err != nil {
		msg, _ := os.ReadFile(errf.Name())
		reg.Destroy(rt, id)
		return d, fmt.Errorf("%v: %s", err, bytes.TrimSpace(msg))
	}
	reg.Untrack(rt, id)
	return d, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// linear interpolation between closest ranks
	pos := p / 100 * float64(len(sorted)-1)
	lo := int(pos)
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(lo)
	return sorted[lo] + time.Duration(frac*float64(sorted[lo+1]-sorted[lo]))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// printTable prints p50/p90 per runtime with the ratio of p50s to runc's.
func printTable(title string, active []*benchrt.Runtime, samples map[*benchrt.Runtime][]time.Duration, fails map[*benchrt.Runtime]int, firstErr map[*benchrt.Runtime]error) {
	var ref time.Duration
	for _, rt := range active {
		if rt.Label == "runc" {
			s := append([]time.Duration{}, samples[rt]...)
			sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
			ref = percentile(s, 50)
		}
	}
	fmt.Printf("\n%s\n", title)
	fmt.Printf("%-24s %5s %8s %8s %8s %8s %10s\n", "runtime", "runs", "min ms", "p50 ms", "p90 ms", "max ms", "p50/runc")
	for _, rt := range active {
		s := append([]time.Duration{}, samples[rt]...)
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		if len(s) == 0 {
			fmt.Printf("%-24s %5d all runs failed: %v\n", rt.Label, 0, firstErr[rt])
			continue
		}
		ratio := "-"
		if ref > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(percentile(s, 50))/float64(ref))
		}
		fmt.Printf("%-24s %5d %8.1f %8.1f %8.1f %8.1f %10s\n", rt.Label, len(s),
			ms(s[0]), ms(percentile(s, 50)), ms(percentile(s, 90)), ms(s[len(s)-1]), ratio)
		if fails[rt] > 0 {
			fmt.Printf("%-24s %d run(s) failed, first: %v\n", "", fails[rt], firstErr[rt])
		}
	}
}

// ---------------------------------------------------------------------------
// Exec latency.

// interleave times n rounds of once for every runtime, each round starting
// with the next runtime so that noise hits all alike. It returns each
// runtime's samples, its failure count and its first error.
func interleave(rts []*benchrt.Runtime, n int, once func(*benchrt.Runtime) (time.Duration, error)) (map[*benchrt.Runtime][]time.Duration, map[*benchrt.Runtime]int, map[*benchrt.Runtime]error) {
	samples := map[*benchrt.Runtime][]time.Duration{}
	fails := map[*benchrt.Runtime]int{}
	firstErr := map[*benchrt.Runtime]error{}
	for i := 0; i < n; i++ {
		for j := range rts {
			rt := rts[(i+j)%len(rts)]
			d, err := once(rt)
			if err != nil {
				fails[rt]++
				if firstErr[rt] == nil {
					firstErr[rt] = err
				}
				continue
			}
			samples[rt] = append(samples[rt], d)
		}
	}
	return samples, fails, firstErr
}

// benchExec starts one `sleep 30` container per runtime (created and started
// with the runtime itself), then times `RUNTIME exec ID /bin/true`, the
// runtimes interleaved, and removes the containers.
func benchExec(active []*benchrt.Runtime, bundle, work string, n, warm int, nextID func(*benchrt.Runtime) string) {
	ids := map[*benchrt.Runtime]string{}
	var rts []*benchrt.Runtime
	for _, rt := range active {
		id := nextID(rt)
		reg.Track(rt, id)
		err := runCmdErr(rt.Cmd("create", "--bundle", bundle, id))
		if err == nil {
			err = runCmdErr(rt.Cmd("start", id))
		}
		for i := 0; err == nil && i < warm; i++ {
			_, err = execOnce(rt, id)
		}
		if err != nil {
			fmt.Printf("exec: skip %-18s %v\n", rt.Label+":", err)
			reg.Destroy(rt, id)
			continue
		}
		ids[rt] = id
		rts = append(rts, rt)
	}
	samples, fails, firstErr := interleave(rts, n, func(rt *benchrt.Runtime) (time.Duration, error) {
		return execOnce(rt, ids[rt])
	})
	for _, rt := range rts {
		reg.Destroy(rt, ids[rt])
	}
	reapOrphans()
	if len(rts) > 0 {
		printTable(fmt.Sprintf("`exec ID /bin/true` in a started `sleep 30`: %d runs per runtime after %d warm-up, interleaved", n, warm), rts, samples, fails, firstErr)
	}
}

// execOnce runs `RUNTIME exec ID /bin/true` and returns its wall time.
func execOnce(rt *benchrt.Runtime, id string) (time.Duration, error) {
	c := rt.Cmd("exec", id, "/bin/true")
	t0 := time.Now()
	err := runCmdErr(c)
	return time.Since(t0), err
}

// ---------------------------------------------------------------------------
// Idle memory.

const prSetChildSubreaper = 36

func setSubreaper() error {
	_, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if e != 0 {
		return e
	}
	return nil
}

// reapOrphans collects exited processes that were re-parented to us.
func reapOrphans() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// memKB returns Rss and Pss in kB from smaps_rollup (falling back to VmRSS).
func memKB(pid int) (rss, pss int64, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "Rss:":
				rss = v
			case "Pss:":
				pss = v
			}
		}
		return rss, pss, true
	}
	data, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				rss, _ = strconv.ParseInt(f[1], 10, 64)
				return rss, rss, true
			}
		}
	}
	return 0, 0, false
}

// procName describes a process as "argv0-basename subcommand" (e.g. "runsc-sandbox boot",
// "moat boot"), falling back to its comm.
func procName(p benchrt.Proc) string {
	if p.Args[0] == "" {
		return p.Comm
	}
	name := filepath.Base(p.Args[0])
	if sub := benchrt.Subcommand(p.Args); sub != "" {
		name += " " + sub
	}
	return name
}

type memResult struct {
	rtRSS, rtPSS, ctrRSS, ctrPSS int64 // kB
	rtProcs                      []string
	err                          error
}

func runCmdErr(c *exec.Cmd) error {
	errf, err := os.CreateTemp("", "runbench-stderr")
	if err != nil {
		return err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	// Files, not pipes: a detached container inherits these and would keep a pipe open.
	c.Stdin, c.Stdout, c.Stderr = devNull, devNull, errf
	if err := c.Run(); err != nil {
		msg, _ := os.ReadFile(errf.Name())
		return fmt.Errorf("%s: %v: %s", strings.Join(c.Args, " "), err, bytes.TrimSpace(msg))
	}
	return nil
}

func measureIdle(rt *benchrt.Runtime, bundle, id, work string, settle time.Duration) (res memResult) {
	pidFile := filepath.Join(work, id+".pid")
	reg.Track(rt, id)
	defer func() {
		reg.Destroy(rt, id)
		reapOrphans()
	}()
	if res.err = runCmdErr(rt.Cmd("create", "--bundle", bundle, "--pid-file", pidFile, id)); res.err != nil {
		return
	}
	if res.err = runCmdErr(rt.Cmd("start", id)); res.err != nil {
		return
	}
	time.Sleep(settle)
	reapOrphans()

	procs := benchrt.Procs()
	set := map[int]bool{}
	for _, k := range benchrt.Descendants(procs, os.Getpid()) {
		set[k] = true
	}
	if data, err := os.ReadFile(pidFile); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && procs[p].PID == p {
			set[p] = true
			for _, k := range benchrt.Descendants(procs, p) {
				set[k] = true
			}
		}
	}
	pids := make([]int, 0, len(set))
	for p := range set {
		pids = append(pids, p)
	}
	sort.Ints(pids)
	for _, p := range pids {
		rss, pss, ok := memKB(p)
		if !ok {
			continue
		}
		if procs[p].Comm == "sleep" {
			res.ctrRSS += rss
			res.ctrPSS += pss
			continue
		}
		res.rtRSS += rss
		res.rtPSS += pss
		res.rtProcs = append(res.rtProcs, fmt.Sprintf("%s[%d] %.1fM", procName(procs[p]), p, float64(rss)/1024))
	}
	if res.ctrRSS == 0 {
		// For runsc the workload runs inside the sandbox; there is no host "sleep".
		res.ctrRSS, res.ctrPSS = -1, -1
	}
	return
}

// ---------------------------------------------------------------------------

func defaultRuntimes() string {
	var l []string
	if _, err := os.Stat("bin/moat"); err == nil {
		l = append(l, "moat=bin/moat")
	}
	return strings.Join(append(l, "runc", "crun", "runsc=runsc --network=none"), ",")
}

func main() {
	n := flag.Int("n", benchrt.EnvInt("N", 50), "measured runs per runtime (env N)")
	warm := flag.Int("warmup", benchrt.EnvInt("WARMUP", 3), "warm-up runs per runtime (env WARMUP)")
	rtList := flag.String("runtimes", benchrt.EnvStr("RUNTIMES", defaultRuntimes()), "comma-separated [label=]command [flags] (env RUNTIMES)")
	busybox := flag.String("busybox", benchrt.EnvStr("BUSYBOX", "/bin/busybox"), "static busybox for the rootfs, \"\" for none (env BUSYBOX)")
	trueBin := flag.String("true", benchrt.EnvStr("TRUE_BIN", ""), "static binary to use as /bin/true (env TRUE_BIN)")
	doExec := flag.Bool("exec", benchrt.EnvStr("EXEC", "1") != "0", "measure `exec ID /bin/true` in a started container (env EXEC=0 to skip)")
	doRSS := flag.Bool("rss", benchrt.EnvStr("RSS", "1") != "0", "measure idle memory of a started container (env RSS=0 to skip)")
	settle := flag.Duration("settle", time.Second, "wait after start before reading memory")
	flag.BoolVar(&reg.KeepTmp, "keep", false, "keep the temporary bundle directory")
	flag.Parse()

	var err error
	if devNull, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		fatalf("%v", err)
	}
	benchrt.ExitOnSignal(func(s os.Signal) {
		fmt.Fprintf(os.Stderr, "runbench: %v\n", s)
		cleanupAll()
	})

	rts := benchrt.ParseRuntimes(*rtList, false)
	if len(rts) == 0 {
		fatalf("no runtimes")
	}
	for _, rt := range rts {
		rt.Resolve()
	}

	work, err := reg.TempDir("runbench")
	if err != nil {
		fatalf("%v", err)
	}
	rootfs := filepath.Join(work, "rootfs")
	haveSleep, err := makeRootfs(rootfs, *busybox, *trueBin)
	if err != nil {
		fatalf("rootfs: %v", err)
	}
	base, err := benchrt.BaseSpec(rts, work)
	if err != nil {
		fatalf("%v", err)
	}
	trueBundle := filepath.Join(work, "bundle-true")
	sleepBundle := filepath.Join(work, "bundle-sleep")
	if err := writeBundle(trueBundle, rootfs, base, []string{"/bin/true"}); err != nil {
		fatalf("%v", err)
	}
	if err := writeBundle(sleepBundle, rootfs, base, []string{"/bin/sleep", "30"}); err != nil {
		fatalf("%v", err)
	}
	if reg.KeepTmp {
		fmt.Fprintf(os.Stderr, "runbench: bundles in %s\n", work)
	}

	prefix := fmt.Sprintf("runbench-%d", os.Getpid())
	seq := 0
	nextID := func(*benchrt.Runtime) string {
		seq++
		return fmt.Sprintf("%s-%d", prefix, seq)
	}

	// Warm-up: also decides which runtimes work here.
	var active []*benchrt.Runtime
	for _, rt := range rts {
		if rt.Err == nil {
			for i := 0; i < *warm || i == 0; i++ {
				if _, err := runOnce(rt, trueBundle, nextID(rt)); err != nil {
					rt.Err = err
					break
				}
			}
		}
		if rt.Err != nil {
			fmt.Printf("skip %-24s %v\n", rt.Label+":", rt.Err)
			continue
		}
		active = append(active, rt)
	}
	if len(active) == 0 {
		fatalf("no runtime works")
	}

	samples, fails, firstErr := interleave(active, *n, func(rt *benchrt.Runtime) (time.Duration, error) {
		return runOnce(rt, trueBundle, nextID(rt))
	})

	printTable(fmt.Sprintf("`run` of /bin/true: %d runs per runtime after %d warm-up, interleaved", *n, *warm), active, samples, fails, firstErr)

	if *doExec {
		if !haveSleep {
			fmt.Println("\nexec: skipped (rootfs has no /bin/sleep; pass -busybox)")
		} else {
			benchExec(active, sleepBundle, work, *n, *warm, nextID)
		}
	}

	if *doRSS {
		if !haveSleep {
			fmt.Println("\nidle memory: skipped (rootfs has no /bin/sleep; pass -busybox)")
		} else if err := setSubreaper(); err != nil {
			fmt.Printf("\nidle memory: skipped (PR_SET_CHILD_SUBREAPER: %v)\n", err)
		} else {
			fmt.Printf("\nidle memory after create+start of `sleep 30` (settle %v); runtime = every process left besides the container's\n", *settle)
			fmt.Printf("%-24s %14s %14s %16s  %s\n", "runtime", "idle RSS MiB", "idle PSS MiB", "container RSS MiB", "runtime processes")
			for _, rt := range active {
				r := measureIdle(rt, sleepBundle, nextID(rt), work, *settle)
				if r.err != nil {
					fmt.Printf("%-24s error: %v\n", rt.Label, r.err)
					continue
				}
				ctr := "(in sandbox)"
				if r.ctrRSS >= 0 {
					ctr = fmt.Sprintf("%.1f", float64(r.ctrRSS)/1024)
				}
				procs := strings.Join(r.rtProcs, ", ")
				if procs == "" {
					procs = "none"
				}
				fmt.Printf("%-24s %14.1f %14.1f %16s  %s\n", rt.Label, float64(r.rtRSS)/1024, float64(r.rtPSS)/1024, ctr, procs)
			}
		}
	}
	cleanupAll()
}
