package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tiers: the suite runs as root, as an unprivileged user with a subordinate
// id range, and as one without (a single-ID map). Tests that need what a
// tier lacks skip, naming the missing prerequisite.
var (
	rootless    bool // euid != 0
	singleIDMap bool // rootless without /etc/subuid range: only container uid 0 exists
)

func TestMain(m *testing.M) {
	rootless = os.Geteuid() != 0
	singleIDMap = rootless && !hasSubuidRange()
	tier := "root"
	switch {
	case singleIDMap:
		tier = "rootless, single-ID map"
	case rootless:
		tier = "rootless, subordinate ids"
	}
	fmt.Printf("e2e: tier: %s (uid %d)\n", tier, os.Geteuid())
	var err error
	baseDir, err = os.MkdirTemp("", "moat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(baseDir, 0o755)
	if err := buildBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build:", err)
		os.Exit(1)
	}
	code := m.Run()
	if leaks := findLeaks(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: LEAK CHECK FAILED:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	} else {
		fmt.Println("e2e: leak check: no processes, mounts, cgroups or state left")
	}
	os.RemoveAll(baseDir)
	os.Exit(code)
}

// hasSubuidRange reports whether /etc/subuid grants this user a range.
func hasSubuidRange() bool {
	data, err := os.ReadFile("/etc/subuid")
	if err != nil {
		return false
	}
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 3 && (f[0] == name || f[0] == fmt.Sprint(os.Getuid())) {
			return true
		}
	}
	return false
}

// subIDStart is the first host id of this user's range in file
// (/etc/subuid or /etc/subgid).
func subIDStart(t *testing.T, file string) uint32 {
	t.Helper()
	r := subIDs(t, file)
	if r == nil {
		t.Fatalf("%s grants this user no range", file)
	}
	return r[0]
}

// subIDs is this user's first range in file: start and count, or nil.
func subIDs(t *testing.T, file string) []uint32 {
	t.Helper()
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	must(t, err)
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) == 3 && (f[0] == name || f[0] == fmt.Sprint(os.Getuid())) {
			start, err := strconv.ParseUint(f[1], 10, 32)
			must(t, err)
			count, err := strconv.ParseUint(f[2], 10, 32)
			must(t, err)
			if count > 0 {
				return []uint32{uint32(start), uint32(count)}
			}
		}
	}
	return nil
}

// hostUID and hostGID are the host ids of container id n in this tier's
// default maps: the identity as root; rootless, 0 is the caller and n >= 1
// is the subordinate range's start + n-1.
func hostUID(t *testing.T, n uint32) uint32 {
	return hostID(t, n, uint32(os.Getuid()), "/etc/subuid")
}

func hostGID(t *testing.T, n uint32) uint32 {
	return hostID(t, n, uint32(os.Getgid()), "/etc/subgid")
}

func hostID(t *testing.T, n, own uint32, file string) uint32 {
	t.Helper()
	switch {
	case !rootless:
		return n
	case n == 0:
		return own
	case singleIDMap:
		t.Fatalf("container id %d has no host id with a single-ID map", n)
	}
	return subIDStart(t, file) + n - 1
}

// needRoot skips a test the rootless tiers cannot run, naming why.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if rootless {
		t.Skipf("SKIP (missing prerequisite: real root): %s", why)
	}
}

// needSubIDs skips a test that needs container ids other than 0.
func needSubIDs(t *testing.T, why string) {
	t.Helper()
	if singleIDMap {
		t.Skipf("SKIP (missing prerequisite: a subordinate uid/gid range in /etc/subuid): %s", why)
	}
}

// needCgroups skips a test that needs resource control when the tier has no
// writable cgroup.
func needCgroups(t *testing.T, why string) {
	t.Helper()
	if rootless && !cgroupWritable() {
		t.Skipf("SKIP (missing prerequisite: a writable, delegated cgroup): %s", why)
	}
}

func cgroupWritable() bool {
	return unix.Access("/sys/fs/cgroup/unified", unix.W_OK) == nil && unix.Access("/sys/fs/cgroup/memory", unix.W_OK) == nil
}

// buildBinaries uses MOAT_BIN and PROBE_BIN (set by `make e2e`) or builds
// both into the base directory.
func buildBinaries() error {
	moatBin, probeBin = os.Getenv("MOAT_BIN"), os.Getenv("PROBE_BIN")
	if moatBin != "" && probeBin != "" {
		return nil
	}
	top, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	moatBin, probeBin = filepath.Join(baseDir, "moat"), filepath.Join(baseDir, "probe")
	for bin, pkg := range map[string]string{moatBin: "./cmd/moat", probeBin: "./test/probe"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = top
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// findLeaks looks for anything the suite left on the host: processes of
// its containers, mounts under its directories, cgroups named after its
// containers, state directories. By default (CI) any moat process or
// suite cgroup on the host counts, whoever started it: a leak of an earlier
// run is a leak too. MOAT_E2E_LEAKS=own narrows the check to this run's
// (several suites developed in parallel on one machine).
func findLeaks() []string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaks := append(append(leakedProcesses(), leakedMounts()...), leakedCgroups()...)
		if len(leaks) == 0 || time.Now().After(deadline) {
			return append(leaks, leakedState()...)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ownLeaksOnly() bool { return os.Getenv("MOAT_E2E_LEAKS") == "own" }

func leakedProcesses() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || pid == fmt.Sprint(os.Getpid()) {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		exe, _ := os.Readlink("/proc/" + pid + "/exe")
		cl := strings.ReplaceAll(string(cmdline), "\x00", " ")
		// argv[0] "moat": a helper (init, exec) whose executable is the
		// detached read-only overlay (/proc/<pid>/exe reads "/moat").
		mine := strings.Contains(cl, baseDir) || strings.Contains(cl, runPrefix()) || strings.Contains(exe, baseDir)
		anyMoat := strings.Contains(cl, idPrefix) || strings.HasPrefix(cl, "moat ") || strings.HasPrefix(exe, "/memfd:moat")
		if mine || (anyMoat && !ownLeaksOnly()) {
			out = append(out, fmt.Sprintf("process %s: %s (exe %s)", pid, cl, exe))
		}
	}
	return out
}

func leakedMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), baseDir) {
			out = append(out, "mount: "+sc.Text())
		}
	}
	return out
}

func leakedCgroups() []string {
	var out []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		prefix := idPrefix
		if ownLeaksOnly() {
			prefix = runPrefix()
		}
		if strings.Contains(d.Name(), prefix) {
			out = append(out, "cgroup: "+p)
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

func leakedState() []string {
	var out []string
	filepath.WalkDir(baseDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(p, "/state/") {
			out = append(out, "state: "+p)
			return filepath.SkipDir
		}
		return nil
	})
	return out
}
