// Command fsbench measures file-system-heavy workloads inside containers of several OCI
// runtimes (moat with its gofer, moat --file-access=direct, runc, runsc) against the same
// workloads run natively (chrooted into the same image), warm, fresh and cold: issue 4's
// benchmark, and issue 13's (a fresh container per round, every workload).
//
// Usage (as root; scripts/bench-fs.sh builds it statically and runs it, `make bench-fs`):
//
//	fsbench                      run the benchmark (configured by the environment below)
//	fsbench in TIMES WORKLOAD [ARG]   in-container helper: run and time a workload TIMES times
//	fsbench sweep                remove fsbench-* containers left by a run killed hard
//
// Environment:
//
//	ROUNDS     measured rounds per pass (default 3); medians are reported
//	WORKLOADS  comma-separated subset of exec,python,compile,walk,readall,seqread,gitstatus (default all)
//	EXEC_N, PYTHON_N  iterations of the exec and python workloads (default 300 and 8, issue 13's)
//	REPO_FILES files in the gitstatus work tree (default 50000), built once in IMAGE_DIR/repo
//	RUNTIMES   comma-separated [label=]command [global flags], or "native"; default
//	           "native,runc,moat=bin/moat,moat-shared=bin/moat --shared-gofer --shared-gofer-idle=10m,moat-direct=bin/moat --file-access=direct,runsc=runsc --network=none"
//	           The runtime labelled "moat" is checked against the targets, against "runc".
//	PASSES     comma-separated subset of warm,cold (default both). warm also yields the "fresh" table.
//	TIMEOUT    seconds allowed per container run (default 600)
//	IMAGE_DIR  where the image is built once and reused (default /var/tmp/moat-bench-image)
//	WALK_DIR   tree of the lstat walk (default /usr/lib, ~72k entries on this host)
//	READ_DIR   tree of the small-file read (default /usr/include, ~8.8k entries)
//	BIG_MIB    size of /data/big for the sequential read (default 1024)
//	ROOT_BASE  each runtime gets --root=ROOT_BASE/<label> (default /run/fsbench) unless
//	           its command names a --root: nothing else's clean-up can touch our containers
//	RSS=0      skip the gofer memory measurement
//	RESULTS    raw per-run TSV (default IMAGE_DIR/results/fsbench-<time>.tsv)
//
// Cache states (the three tables):
//
//	warm   a fresh container runs the workload twice in a row; the second run is reported:
//	       the container's own caches (moat's FUSE dentry/attr/page caches, runsc's gofer and
//	       sentry caches) and the host page cache are warm.
//	fresh  the first run of that same container: a fresh container (new FUSE mount, so an
//	       empty FUSE cache; new runsc sandbox), host page cache warm from earlier runs.
//	cold   `sync; echo 3 > /proc/sys/vm/drop_caches` right before each run, then a fresh
//	       container runs the workload once: nothing is cached anywhere (page cache, dentries
//	       and inodes of the image's disk, and the runtime's own caches). Only this pass drops
//	       caches (it also evicts the runtimes' own binaries, but start-up is not timed).
//
// Every run is timed inside the container by the helper (start-up excluded). Runtimes
// are interleaved in every round, the order rotating each round. A runtime that fails a
// workload (error, timeout) has its error printed once and is shown as n/a for it.
// Every container is removed on exit, also on error, SIGINT and SIGTERM.
//
// Stdlib only (its shared runtime plumbing, test/bench/benchrt, too): this command lives in
// the moat module but must not pull in dependencies.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moat-sandbox/moat/test/bench/benchrt"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "in" {
		os.Exit(inside(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "sweep" {
		rts := benchrt.ParseRuntimes(benchrt.EnvNonEmpty("RUNTIMES", defaultRuntimes), true)
		privateRoots(rts, benchrt.EnvNonEmpty("ROOT_BASE", "/run/fsbench"))
		sweep(rts)
		return
	}
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		fmt.Println("usage: fsbench (as root; configured by ROUNDS, WORKLOADS, RUNTIMES, PASSES, TIMEOUT, IMAGE_DIR, ...;")
		fmt.Println("       see the doc comment in test/bench/fsbench/main.go or scripts/bench-fs.sh --help)")
		fmt.Println("       fsbench in TIMES WORKLOAD [ARG]   (the in-container helper)")
		return
	}
	os.Exit(driver())
}

const defaultRuntimes = "native,runc,moat=bin/moat,moat-shared=bin/moat --shared-gofer --shared-gofer-idle=10m,moat-direct=bin/moat --file-access=direct,runsc=runsc --network=none"

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "fsbench: "+format+"\n", a...)
}

// ---------------------------------------------------------------------------
// Runtimes and the cleanup registry.

// isMoat reports whether rt is moat (by its label or its command).
func isMoat(rt *benchrt.Runtime) bool {
	return !rt.Native && (strings.HasPrefix(rt.Label, "moat") || strings.Contains(filepath.Base(rt.Argv[0]), "moat"))
}

// reg removes every container created, and the work directory, on exit, on error and on
// SIGINT/SIGTERM.
var reg = &benchrt.Registry{Name: "fsbench", DeleteTimeout: 30 * time.Second}

// privateRoots gives every runtime its own state directory (--root=ROOT_BASE/<label>)
// unless its command already names one: other tools that clean up "every container the
// runtime lists" in the default roots (conformance harnesses, test suites running on the
// same machine) then cannot kill the benchmark's containers, and the sweep below touches
// nothing but ours.
func privateRoots(rts []*benchrt.Runtime, base string) {
	for _, rt := range rts {
		if rt.Native {
			continue
		}
		has := false
		for _, a := range rt.Argv[1:] {
			if a == "--root" || a == "-root" || strings.HasPrefix(a, "--root=") || strings.HasPrefix(a, "-root=") {
				has = true
			}
		}
		if has {
			continue
		}
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
				return r
			}
			return '_'
		}, rt.Label)
		rt.Argv = append([]string{rt.Argv[0], "--root=" + filepath.Join(base, name)}, rt.Argv[1:]...)
	}
}

// sweep removes every fsbench-* container the runtimes list (leftovers of a run that was
// killed hard). Only meaningful with the private roots above.
func sweep(rts []*benchrt.Runtime) {
	for _, rt := range rts {
		if rt.Native {
			continue
		}
		if _, err := exec.LookPath(rt.Argv[0]); err != nil {
			continue
		}
		c := rt.Cmd("list", "-q")
		var out bytes.Buffer
		c.Stdout = &out
		if err := c.Start(); err != nil {
			continue
		}
		_ = benchrt.WaitFor(c, 30*time.Second)
		for _, id := range strings.Fields(out.String()) {
			if strings.HasPrefix(id, "fsbench-") {
				logf("removing leftover %s container %s", rt.Label, id)
				reg.Destroy(rt, id)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Bundles and single runs.

type bench struct {
	rootfs  string
	repo    string // host work tree of gitstatus, bound read-write at /repo
	work    string
	base    map[string]any
	timeout time.Duration
	args    map[string]string // workload -> argument
	bundles map[string]string // key -> bundle dir
	seq     int
	prefix  string
	devNull *os.File
}

// bundle returns a bundle whose process runs args: the `runc spec` config with
// terminal=false, a writable root (so that moat gets its default memory overlay; nothing
// writes to the image: the workloads write only to /tmp), and a tmpfs on /tmp; with
// repo, the gitstatus work tree bound read-write at /repo.
func (b *bench) bundle(key string, args []string, repo bool) (string, error) {
	if d, ok := b.bundles[key]; ok {
		return d, nil
	}
	m, err := benchrt.WithArgs(b.base, args)
	if err != nil {
		return "", err
	}
	m["process"].(map[string]any)["env"] = []any{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm"}
	m["root"] = map[string]any{"path": b.rootfs, "readonly": false}
	mounts, _ := m["mounts"].([]any)
	mounts = append(mounts, map[string]any{
		"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
		"options": []any{"nosuid", "nodev", "mode=1777"},
	})
	if repo {
		mounts = append(mounts, map[string]any{
			"destination": "/repo", "type": "bind", "source": b.repo, "options": []any{"rbind", "rw"},
		})
	}
	m["mounts"] = mounts
	dir := filepath.Join(b.work, "bundle-"+key)
	if err := benchrt.WriteConfig(dir, m); err != nil {
		return "", err
	}
	b.bundles[key] = dir
	return dir, nil
}

func (b *bench) nextID() string {
	b.seq++
	return fmt.Sprintf("%s-%d", b.prefix, b.seq)
}

type runResult struct {
	secs  []float64 // per iteration
	infos []string
	err   error
}

// runOnce runs `fsbench in TIMES WORKLOAD ARG` in a fresh container of rt (or chrooted,
// for native) and returns the in-container timings.
func (b *bench) runOnce(rt *benchrt.Runtime, wl string, times int) runResult {
	args := []string{"/bench/fsbench", "in", strconv.Itoa(times), wl, b.args[wl]}
	outf, err := os.CreateTemp(b.work, "out")
	if err != nil {
		return runResult{err: err}
	}
	defer os.Remove(outf.Name())
	defer outf.Close()
	errf, err := os.CreateTemp(b.work, "err")
	if err != nil {
		return runResult{err: err}
	}
	defer os.Remove(errf.Name())
	defer errf.Close()

	var c *exec.Cmd
	id := ""
	if rt.Native {
		// A private mount namespace with /tmp, /proc and /dev like a container's, then
		// chroot into the image: the same files, no container, no FUSE.
		script := `set -e; R=$1; shift
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/tmp"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --rbind /dev "$R/dev"
[ -z "$REPO" ] || mount --bind "$REPO" "$R/repo"
exec chroot "$R" "$@"`
		c = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", script, "sh", b.rootfs}, args...)...)
		c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=xterm"}
		if wl == "gitstatus" {
			c.Env = append(c.Env, "REPO="+b.repo)
		}
	} else {
		bundle, err := b.bundle(fmt.Sprintf("%s-%d", wl, times), args, wl == "gitstatus")
		if err != nil {
			return runResult{err: err}
		}
		id = b.nextID()
		c = rt.Cmd("run", "--bundle", bundle, id)
		reg.Track(rt, id)
	}
	c.Stdin, c.Stdout, c.Stderr = b.devNull, outf, errf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		reg.Untrack(rt, id)
		return runResult{err: err}
	}
	var timedOut bool
	var tmu sync.Mutex
	timer := time.AfterFunc(b.timeout, func() {
		tmu.Lock()
		timedOut = true
		tmu.Unlock()
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		if id != "" {
			benchrt.Quiet(rt.Cmd("kill", id, "KILL"), 15*time.Second)
		}
	})
	werr := c.Wait()
	timer.Stop()
	if id != "" {
		if werr != nil {
			reg.Destroy(rt, id)
		} else {
			// `run` removes its container; make sure (quietly) in case one does not.
			benchrt.Quiet(rt.Cmd("delete", "--force", id), 30*time.Second)
			reg.Untrack(rt, id)
		}
	}
	out, _ := os.ReadFile(outf.Name())
	stderr, _ := os.ReadFile(errf.Name())
	var res runResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "FSBENCH ") {
			continue
		}
		var it int
		var s float64
		f := strings.Fields(line)
		for _, kv := range f[1:] {
			switch {
			case strings.HasPrefix(kv, "iter="):
				it, _ = strconv.Atoi(kv[5:])
			case strings.HasPrefix(kv, "seconds="):
				s, _ = strconv.ParseFloat(kv[8:], 64)
			}
		}
		if it == len(res.secs)+1 {
			res.secs = append(res.secs, s)
			if i := strings.Index(line, "info="); i >= 0 {
				res.infos = append(res.infos, line[i+5:])
			} else {
				res.infos = append(res.infos, "")
			}
		}
	}
	tmu.Lock()
	to := timedOut
	tmu.Unlock()
	switch {
	case to:
		res.err = fmt.Errorf("timed out after %v; stderr: %s", b.timeout, oneLine(string(stderr)))
	case werr != nil:
		res.err = fmt.Errorf("%v; stderr: %s", werr, oneLine(string(stderr)))
	case len(res.secs) != times:
		res.err = fmt.Errorf("got %d of %d results; stdout: %s; stderr: %s", len(res.secs), times,
			oneLine(string(out)), oneLine(string(stderr)))
	}
	return res
}

func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200)
}

// ---------------------------------------------------------------------------
// The benchmark.

type key struct{ table, wl, rt string }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func driver() int {
	if os.Geteuid() != 0 {
		logf("must run as root")
		return 1
	}
	rounds := benchrt.EnvInt("ROUNDS", 3)
	timeout := time.Duration(benchrt.EnvInt("TIMEOUT", 600)) * time.Second
	imageDir := benchrt.EnvNonEmpty("IMAGE_DIR", "/var/tmp/moat-bench-image")
	bigMiB := benchrt.EnvInt("BIG_MIB", 1024)
	rts := benchrt.ParseRuntimes(benchrt.EnvNonEmpty("RUNTIMES", defaultRuntimes), true)
	privateRoots(rts, benchrt.EnvNonEmpty("ROOT_BASE", "/run/fsbench"))
	var wls []string
	for _, w := range splitList(benchrt.EnvNonEmpty("WORKLOADS", "exec,python,compile,walk,readall,seqread,gitstatus")) {
		if findWorkload(w) == nil {
			logf("unknown workload %q (have exec,python,compile,walk,readall,seqread,gitstatus)", w)
			return 2
		}
		wls = append(wls, w)
	}
	passes := map[string]bool{}
	for _, p := range splitList(benchrt.EnvNonEmpty("PASSES", "warm,cold")) {
		if p != "warm" && p != "cold" {
			logf("unknown pass %q (have warm,cold)", p)
			return 2
		}
		passes[p] = true
	}
	if rounds < 1 || len(rts) == 0 || len(wls) == 0 {
		logf("nothing to do (ROUNDS=%d, %d runtimes, %d workloads)", rounds, len(rts), len(wls))
		return 2
	}

	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		logf("%v", err)
		return 1
	}
	benchrt.ExitOnSignal(func(s os.Signal) {
		logf("%v: cleaning up", s)
		reg.CleanupAll()
	})
	defer reg.CleanupAll()

	for _, rt := range rts {
		if rt.Native {
			for _, t := range []string{"unshare", "chroot", "mount"} {
				if _, err := exec.LookPath(t); err != nil {
					rt.Err = err
				}
			}
			continue
		}
		rt.Resolve()
	}

	sweep(rts)
	rootfs, info, err := ensureImage(imageDir, bigMiB)
	if err != nil {
		logf("%v", err)
		return 1
	}
	repo := ""
	for _, w := range wls {
		if w == "gitstatus" {
			if repo, err = ensureRepo(imageDir, benchrt.EnvInt("REPO_FILES", 50000)); err != nil {
				logf("%v", err)
				return 1
			}
		}
	}
	work, err := reg.TempDir("fsbench")
	if err != nil {
		logf("%v", err)
		return 1
	}
	base, err := benchrt.BaseSpec(rts, work)
	if err != nil {
		logf("%v", err)
		return 1
	}
	b := &bench{
		rootfs: rootfs, work: work, base: base, timeout: timeout,
		args: map[string]string{
			"walk": benchrt.EnvNonEmpty("WALK_DIR", "/usr/lib"), "readall": benchrt.EnvNonEmpty("READ_DIR", "/usr/include"),
			"seqread": "/data/big", "exec": benchrt.EnvNonEmpty("EXEC_N", "300"),
			"python": benchrt.EnvNonEmpty("PYTHON_N", "8"), "compile": "/bench/src", "gitstatus": "/repo",
		},
		repo:    repo,
		bundles: map[string]string{},
		prefix:  fmt.Sprintf("fsbench-%d", os.Getpid()),
		devNull: devNull,
	}

	resultsPath := benchrt.EnvNonEmpty("RESULTS", filepath.Join(imageDir, "results", "fsbench-"+time.Now().Format("20060102-150405")+".tsv"))
	_ = os.MkdirAll(filepath.Dir(resultsPath), 0o755)
	raw, err := os.Create(resultsPath)
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer raw.Close()
	fmt.Fprintln(raw, "pass\tround\tworkload\truntime\titeration\tseconds\tinfo")

	printHeader(rts, rootfs, info, b, rounds, passes)

	samples := map[key][]float64{}
	failed := map[[2]string]error{} // {wl, rt} -> first error
	infos := map[string]string{}    // wl -> info line of a native (else any) run
	record := func(pass string, round int, wl string, rt *benchrt.Runtime, r runResult) {
		if r.err != nil {
			fk := [2]string{wl, rt.Label}
			if failed[fk] == nil {
				failed[fk] = r.err
				fmt.Printf("!! %s failed %s (%s pass, round %d); n/a from now on: %v\n", rt.Label, wl, pass, round, r.err)
			}
			fmt.Fprintf(raw, "%s\t%d\t%s\t%s\t-\t-\terror: %s\n", pass, round, wl, rt.Label, oneLine(r.err.Error()))
			return
		}
		for i, s := range r.secs {
			fmt.Fprintf(raw, "%s\t%d\t%s\t%s\t%d\t%.6f\t%s\n", pass, round, wl, rt.Label, i+1, s, r.infos[i])
		}
		if _, ok := infos[wl]; !ok || rt.Native {
			infos[wl] = r.infos[0]
		}
		if pass == "warm" {
			samples[key{"fresh", wl, rt.Label}] = append(samples[key{"fresh", wl, rt.Label}], r.secs[0])
			samples[key{"warm", wl, rt.Label}] = append(samples[key{"warm", wl, rt.Label}], r.secs[1])
		} else {
			samples[key{"cold", wl, rt.Label}] = append(samples[key{"cold", wl, rt.Label}], r.secs[0])
		}
	}

	var active []*benchrt.Runtime
	for _, rt := range rts {
		if rt.Err != nil {
			fmt.Printf("!! %s unavailable, n/a everywhere: %v\n", rt.Label, rt.Err)
			continue
		}
		active = append(active, rt)
	}

	t0 := time.Now()
	for _, pass := range []string{"warm", "cold"} {
		if !passes[pass] {
			continue
		}
		for round := 1; round <= rounds; round++ {
			for _, wl := range wls {
				for j := range active {
					rt := active[(round-1+j)%len(active)]
					if failed[[2]string{wl, rt.Label}] != nil {
						continue
					}
					times := 2
					if pass == "cold" {
						times = 1
						if err := dropCaches(); err != nil {
							logf("drop_caches: %v (the cold pass needs root and a writable /proc/sys)", err)
							return 1
						}
					}
					r := b.runOnce(rt, wl, times)
					record(pass, round, wl, rt, r)
					if r.err == nil {
						logf("[%s %d/%d %5.0fs] %-8s %-12s %s", pass, round, rounds, time.Since(t0).Seconds(),
							wl, rt.Label, fmtSecs(r.secs))
					}
				}
			}
		}
	}

	tables := []struct{ name, title string }{
		{"warm", "WARM: second run of the workload in the same fresh container (FUSE/sandbox caches and host page cache warm)"},
		{"fresh", "FRESH CONTAINER (cold FUSE cache): first run in a fresh container; host page cache warm"},
		{"cold", "COLD: sync + drop_caches before each run, fresh container, workload run once (nothing cached)"},
	}
	for _, t := range tables {
		if (t.name == "cold" && !passes["cold"]) || (t.name != "cold" && !passes["warm"]) {
			continue
		}
		printTable(t.name, t.title, rounds, wls, rts, samples, failed, infos)
	}

	if benchrt.EnvNonEmpty("RSS", "1") != "0" {
		measureGoferRSS(b, rts)
	}
	if len(failed) > 0 {
		fmt.Println("\nFailures (n/a):")
		var ks [][2]string
		for k := range failed {
			ks = append(ks, k)
		}
		sort.Slice(ks, func(i, j int) bool { return ks[i][1]+ks[i][0] < ks[j][1]+ks[j][0] })
		for _, k := range ks {
			fmt.Printf("  %s / %s: %v\n", k[1], k[0], failed[k])
		}
	}
	fmt.Printf("\nraw results: %s (total %.0f s)\n", resultsPath, time.Since(t0).Seconds())
	return 0
}

func fmtSecs(s []float64) string {
	var p []string
	for _, v := range s {
		p = append(p, fmt.Sprintf("%.3f s", v))
	}
	return strings.Join(p, ", ")
}

func cmdOut(name string, args ...string) string {
	c := exec.Command(name, args...)
	out, err := c.CombinedOutput()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func printHeader(rts []*benchrt.Runtime, rootfs string, info *imageInfo, b *bench, rounds int, passes map[string]bool) {
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	rel := ""
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		rel += string(rune(c))
	}
	fmt.Printf("fsbench: %s, kernel %s, %d CPUs\n", time.Now().Format(time.RFC3339), rel, numCPU())
	fmt.Printf("image: %s: %s; %d entries, %.2f GiB on disk\n", rootfs, info.Source, info.Entries, float64(info.Bytes)/(1<<30))
	for _, rt := range rts {
		switch {
		case rt.Native:
			fmt.Printf("  %-12s chroot into the image in a private mount namespace (tmpfs /tmp, proc, /dev bound), no container\n", rt.Label)
		case rt.Err != nil:
			fmt.Printf("  %-12s %s: unavailable: %v\n", rt.Label, strings.Join(rt.Argv, " "), rt.Err)
		default:
			fmt.Printf("  %-12s %s (%s)\n", rt.Label, strings.Join(rt.Argv, " "), cmdOut(rt.Argv[0], "--version"))
		}
	}
	fmt.Printf("bundle: `runc spec` + terminal=false, root %s read-write (moat: default memory overlay), tmpfs /tmp\n", rootfs)
	fmt.Printf("rounds: %d per pass, runtimes interleaved (order rotates per round); per-run timeout %v; medians in seconds\n",
		rounds, b.timeout)
	fmt.Println("workloads (timed inside the container by /bench/fsbench, start-up excluded):")
	for _, w := range workloads {
		fmt.Printf("  %-8s %s (arg %s)\n", w.Name, w.Describ, b.args[w.Name])
	}
	fmt.Println()
}

func numCPU() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(data), "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(string(data), "processor")]
}

func median(v []float64) float64 {
	s := append([]float64{}, v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func printTable(table, title string, rounds int, wls []string, rts []*benchrt.Runtime,
	samples map[key][]float64, failed map[[2]string]error, infos map[string]string) {
	fmt.Printf("\n%s; median of %d rounds, seconds (xN = ratio to runc)\n", title, rounds)
	haveRunc, haveMoat, haveRunsc := false, false, false
	for _, rt := range rts {
		haveRunc = haveRunc || rt.Label == "runc"
		haveMoat = haveMoat || rt.Label == "moat"
		haveRunsc = haveRunsc || rt.Label == "runsc"
	}
	hdr := []string{"workload"}
	for _, rt := range rts {
		hdr = append(hdr, rt.Label)
		if rt.Label == "moat" && haveRunc {
			hdr = append(hdr, "target (moat/runc)")
		}
	}
	if haveMoat && haveRunsc {
		hdr = append(hdr, "moat vs runsc")
	}
	rows := [][]string{hdr}
	for _, wl := range wls {
		w := findWorkload(wl)
		med := map[string]float64{}
		for _, rt := range rts {
			if s := samples[key{table, wl, rt.Label}]; len(s) > 0 {
				med[rt.Label] = median(s)
			}
		}
		runc, okRunc := med["runc"]
		row := []string{wl}
		for _, rt := range rts {
			m, ok := med[rt.Label]
			cell := "n/a"
			if ok {
				cell = fmt.Sprintf("%.3f", m)
				if n := len(samples[key{table, wl, rt.Label}]); n < rounds {
					cell += fmt.Sprintf(" [%d/%d]", n, rounds)
				}
				if okRunc && !rt.Native && rt.Label != "runc" && runc > 0 {
					if w.ThrMin > 0 || w.FreshTh > 0 {
						cell += fmt.Sprintf(" (thr %.2fx)", runc/m)
					} else {
						cell += fmt.Sprintf(" (%.2fx)", m/runc)
					}
				}
			} else if failed[[2]string{wl, rt.Label}] == nil && rt.Err == nil {
				cell = "-"
			}
			row = append(row, cell)
			if rt.Label == "moat" && haveRunc {
				row = append(row, targetCell(w, table, m, ok, runc, okRunc))
			}
		}
		if haveMoat && haveRunsc {
			m, ok1 := med["moat"]
			r, ok2 := med["runsc"]
			cell := "n/a"
			if ok1 && ok2 && r > 0 {
				verdict := "faster"
				if m >= r {
					verdict = "SLOWER"
				}
				cell = fmt.Sprintf("%.2fx %s", m/r, verdict)
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	widths := make([]int, len(hdr))
	for _, r := range rows {
		for i, c := range r {
			if len(c) > widths[i] {
				widths[i] = len(c)
			}
		}
	}
	for ri, r := range rows {
		var sb strings.Builder
		for i, c := range r {
			if i == 0 {
				sb.WriteString(fmt.Sprintf("%-*s", widths[i], c))
			} else {
				sb.WriteString(fmt.Sprintf("  %-*s", widths[i], c))
			}
		}
		fmt.Println(strings.TrimRight(sb.String(), " "))
		if ri == 0 {
			fmt.Println(strings.Repeat("-", len(strings.TrimRight(sb.String(), " "))))
		}
	}
	var notes []string
	for _, wl := range wls {
		if s, ok := infos[wl]; ok && s != "" {
			notes = append(notes, wl+": "+strings.SplitN(s, ",", 2)[0])
		}
	}
	if len(notes) > 0 && table == "warm" {
		fmt.Printf("(sizes: %s)\n", strings.Join(notes, "; "))
	}
}

func targetCell(w *workloadDef, table string, m float64, okM bool, runc float64, okRunc bool) string {
	limit, thr := w.Target, w.ThrMin
	if table == "fresh" {
		limit, thr = w.Fresh, w.FreshTh
	} else if table != "warm" {
		limit, thr = 0, 0
	}
	var t string
	switch {
	case thr > 0:
		t = fmt.Sprintf("thr>=%.2f", thr)
	case limit > 0:
		t = fmt.Sprintf("<=%.2f", limit)
	default:
		return "-"
	}
	if !okM || !okRunc || runc <= 0 || m <= 0 {
		return t + " n/a"
	}
	ok := false
	if thr > 0 {
		ok = runc/m >= thr
	} else {
		ok = m/runc <= limit
	}
	if ok {
		return t + " ok"
	}
	return t + " MISS"
}
