package main

// Idle gofer memory: for every moat runtime, `create` + `start` a container running
// `sleep`, wait SETTLE, and read VmRSS/VmHWM of the `moat gofer` process(es) among the
// descendants of moat boot, the parent of the --pid-file process (the container's). Then `exec` one lstat walk of WALK_DIR
// in the container and read them again (what the gofer keeps per served inode).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moat-sandbox/moat/test/bench/benchrt"
)

func statusKB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return -1
}

type goferMem struct {
	desc string
	rss  int64 // kB, summed over gofer processes
}

func goferSnapshot(bootPid int) (goferMem, []string) {
	procs := benchrt.Procs()
	var gm goferMem
	var all []string
	for _, p := range benchrt.Descendants(procs, bootPid) {
		pe := procs[p]
		sub := benchrt.Subcommand(pe.Args)
		rss, hwm := statusKB(p, "VmRSS"), statusKB(p, "VmHWM")
		all = append(all, fmt.Sprintf("%s[%d] %.1f MiB", filepath.Base(pe.Args[0])+" "+sub, p, float64(rss)/1024))
		if sub == "gofer" {
			gm.rss += rss
			gm.desc += fmt.Sprintf(" pid %d VmRSS %.1f MiB (VmHWM %.1f MiB);", p, float64(rss)/1024, float64(hwm)/1024)
		}
	}
	gm.desc = strings.TrimSuffix(strings.TrimSpace(gm.desc), ";")
	if bootRSS := statusKB(bootPid, "VmRSS"); bootRSS >= 0 {
		all = append([]string{fmt.Sprintf("boot[%d] %.1f MiB", bootPid, float64(bootRSS)/1024)}, all...)
	}
	return gm, all
}

func runQuiet(b *bench, c *exec.Cmd, d time.Duration) error {
	errf, err := os.CreateTemp(b.work, "err")
	if err != nil {
		return err
	}
	defer os.Remove(errf.Name())
	defer errf.Close()
	c.Stdin, c.Stdout, c.Stderr = b.devNull, b.devNull, errf
	if err := c.Start(); err != nil {
		return err
	}
	if err := benchrt.WaitFor(c, d); err != nil {
		msg, _ := os.ReadFile(errf.Name())
		return fmt.Errorf("%s: %v: %s", strings.Join(c.Args, " "), err, oneLine(string(msg)))
	}
	return nil
}

func measureGoferRSS(b *bench, rts []*benchrt.Runtime) {
	settle := 2 * time.Second
	fmt.Printf("\nGofer memory (target: idle gofer VmRSS <= 10 MiB): `create`+`start` of /bin/sleep, %v settle,\n", settle)
	fmt.Printf("then `exec` of one lstat walk of %s in the container\n", b.args["walk"])
	any := false
	for _, rt := range rts {
		if rt.Err != nil || !isMoat(rt) {
			continue
		}
		any = true
		bundle, err := b.bundle("sleep", []string{"/bin/sleep", "600"}, false)
		if err != nil {
			fmt.Printf("  %-12s error: %v\n", rt.Label, err)
			continue
		}
		id := b.nextID()
		pidFile := filepath.Join(b.work, id+".pid")
		reg.Track(rt, id)
		func() {
			defer reg.Destroy(rt, id)
			if err := runQuiet(b, rt.Cmd("create", "--bundle", bundle, "--pid-file", pidFile, id), b.timeout); err != nil {
				fmt.Printf("  %-12s error: %v\n", rt.Label, err)
				return
			}
			if err := runQuiet(b, rt.Cmd("start", id), b.timeout); err != nil {
				fmt.Printf("  %-12s error: %v\n", rt.Label, err)
				return
			}
			time.Sleep(settle)
			data, err := os.ReadFile(pidFile)
			pid, err2 := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil || err2 != nil {
				fmt.Printf("  %-12s error: pid file: %v %v\n", rt.Label, err, err2)
				return
			}
			// The pid file names the container's process; its parent is boot.
			pid = benchrt.Procs()[pid].PPID
			idle, all := goferSnapshot(pid)
			if idle.desc == "" {
				fmt.Printf("  %-12s no gofer process (processes: %s)\n", rt.Label, strings.Join(all, ", "))
				return
			}
			verdict := "ok"
			if idle.rss > 10*1024 {
				verdict = "MISS"
			}
			fmt.Printf("  %-12s idle:       %s  -> %.1f MiB, target <=10 MiB %s\n", rt.Label, idle.desc, float64(idle.rss)/1024, verdict)
			fmt.Printf("  %-12s             all processes: %s\n", "", strings.Join(all, ", "))
			t0 := time.Now()
			if err := runQuiet(b, rt.Cmd("exec", id, "/bench/fsbench", "in", "1", "walk", b.args["walk"]), b.timeout); err != nil {
				fmt.Printf("  %-12s after walk: error: %v\n", rt.Label, err)
				return
			}
			d := time.Since(t0)
			time.Sleep(settle)
			after, _ := goferSnapshot(pid)
			fmt.Printf("  %-12s after walk: %s (exec of the walk took %.2f s)\n", rt.Label, after.desc, d.Seconds())
		}()
	}
	if !any {
		fmt.Println("  (no moat runtime in RUNTIMES)")
	}
}
