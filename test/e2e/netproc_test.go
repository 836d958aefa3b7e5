package e2e

// `moat net`, the sandbox network's own process (issue 17): confined, and
// expendable.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netProcPid is the container's `moat net`: the child of its boot that
// runs the net role.
func netProcPid(t *testing.T, e *env, id string) int {
	t.Helper()
	boot := bootPid(t, e, id)
	ents, err := os.ReadDir("/proc")
	must(t, err)
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "\x00net\x00") {
			continue
		}
		if ppidOf(pid) == boot {
			return pid
		}
	}
	t.Fatalf("no moat net process under boot %d", boot)
	return 0
}

// ppidOf is a process's parent (0 if gone).
func ppidOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	ppid := 0
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			fmt.Sscan(v, &ppid)
		}
	}
	return ppid
}

// statusFields reads the named fields of /proc/PID/status.
func statusFields(t *testing.T, pid int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, l := range strings.Split(readTrim(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestNetProcConfined: the process that parses every packet of the
// container holds no capability, runs under seccomp with no_new_privs, sees
// an empty root, has no environment and a bounded descriptor table, and
// still does its work (NAT to a host service, DNS through the forwarder).
func TestNetProcConfined(t *testing.T) {
	port := greeter(t, "127.0.0.1:0", "host")
	e := netEnv(t, "--allow-host-loopback")
	id := hold(e)
	pid := netProcPid(t, e, id)
	st := statusFields(t, pid)
	for k, want := range map[string]string{
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
		"Seccomp": "2", "NoNewPrivs": "1",
	} {
		if st[k] != want {
			t.Errorf("moat net %s: %q, want %q", k, st[k], want)
		}
	}
	root := fmt.Sprintf("/proc/%d/root", pid)
	if l, err := os.Readlink(root); err != nil || l != "/" {
		t.Errorf("moat net root: %q %v", l, err)
	}
	ents, err := os.ReadDir(root + "/")
	if err != nil {
		t.Errorf("list moat net's root: %v", err)
	}
	for _, d := range ents {
		t.Errorf("moat net's root is not empty: %s", d.Name())
	}
	for _, p := range []string{"proc", "etc", "dev", "tmp"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("moat net sees /%s: %v", p, err)
		}
	}
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil || len(env) != 0 {
		t.Errorf("moat net environment: %q %v", env, err)
	}
	if lim := readTrim(t, fmt.Sprintf("/proc/%d/limits", pid)); !strings.Contains(lim, "Max open files            8192                 8192") {
		t.Errorf("moat net RLIMIT_NOFILE:\n%s", lim)
	}
	var d dialResult
	execJSON(e, &d, []string{id}, "dial", fmt.Sprintf("%s:%d", gateway, port))
	if !d.OK || d.Data != "hi host\n" {
		t.Errorf("through the confined network: %+v", d)
	}
}

// TestNetProcKilled: the network's process dying (a flaw exploited, a
// seccomp kill) takes the network and nothing else: the container runs on,
// exec works, boot says why, `moat port` says so, and the teardown is
// clean.
func TestNetProcKilled(t *testing.T) {
	port := greeter(t, "127.0.0.1:0", "host")
	logFile := filepath.Join(t.TempDir(), "moat.log")
	e := netEnv(t, "--allow-host-loopback", "--log="+logFile)
	id := hold(e)
	var d dialResult
	execJSON(e, &d, []string{id}, "dial", fmt.Sprintf("%s:%d", gateway, port))
	if !d.OK {
		t.Fatalf("network before the kill: %+v", d)
	}
	pid := netProcPid(t, e, id)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	const want = "sandbox network: the net process exited (killed by SIGKILL); the container has no network from now on"
	var logged string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(logFile)
		if logged = string(data); strings.Contains(logged, "the net process exited") {
			break
		}
	}
	if !strings.Contains(logged, want) {
		t.Errorf("boot did not report the net process's death (want %q); log:\n%s", want, logged)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && ppidOf(pid) != 0 {
		t.Errorf("moat net %d not reaped", pid)
	}
	if st := e.moat("state", id); !strings.Contains(st, `"running"`) {
		t.Errorf("container after the network died: %s", st)
	}
	if out := e.moat("exec", id, "probe", "echo", "alive"); !strings.Contains(out, "alive") {
		t.Errorf("exec after the network died: %q", out)
	}
	execJSON(e, &d, []string{id}, "dial", fmt.Sprintf("%s:%d", gateway, port), "2")
	if d.OK {
		t.Errorf("the network still works with its process dead: %+v", d)
	}
	e.fails("the sandbox network is gone", "port", "ls", id)
}

// TestNetProcCharged: the net process's buffers count against the
// container's memory: it sits in the helpers' cgroup below the container's
// memory and cpu cgroups (as boot and the gofer), while the container's
// cgroup.procs still lists only the container's processes.
func TestNetProcCharged(t *testing.T) {
	needCgroups(t, "moat's own processes are charged to the container's cgroup")
	e := netEnv(t)
	b := e.newBundle([]string{"hold", "60"}, func(s *specsSpec) { s.Linux.Resources = limits(64<<20, 64) })
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)
	pid := initPidOf(e, id)
	ctr := cgroupDirs(t, pid)
	dirs := cgroupDirs(t, netProcPid(t, e, id))
	for _, ctrl := range []string{"memory", "cpu"} {
		if want := filepath.Join(ctr[ctrl], "moat-helpers"); dirs[ctrl] != want {
			t.Errorf("moat net's %s cgroup %s, want %s", ctrl, dirs[ctrl], want)
		}
	}
	for _, ctrl := range []string{"memory", "pids"} {
		if procs := readTrim(t, filepath.Join(ctr[ctrl], "cgroup.procs")); procs != strconv.Itoa(pid) {
			t.Errorf("container's %s cgroup.procs %q, want only init %d", ctrl, procs, pid)
		}
	}
}
