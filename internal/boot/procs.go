package boot

import (
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// containerPids lists the container's processes when there is no cgroup to
// ask (rootless without delegation): with its own pid namespace, every
// process in it; without one, init's descendants and the exec'd processes,
// never anything else of the host.
func (b *boot) containerPids() []int {
	if b.newPidNS() {
		return pidsInNamespace(b.init.ns[specs.PIDNamespace])
	}
	b.mu.Lock()
	roots := map[int]bool{b.init.pid: true}
	for pid := range b.execPids {
		roots[pid] = true
	}
	b.mu.Unlock()
	return descendants(roots)
}

// pidsInNamespace scans /proc for processes whose pid namespace is ns's.
func pidsInNamespace(ns *os.File) []int {
	if ns == nil {
		return nil
	}
	var want unix.Stat_t
	if unix.Fstat(int(ns.Fd()), &want) != nil {
		return nil
	}
	var out []int
	for _, pid := range allPids() {
		var st unix.Stat_t
		if unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/pid", &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	return out
}

// descendants returns roots and every process below them.
func descendants(roots map[int]bool) []int {
	parent := map[int]int{}
	for _, pid := range allPids() {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	in := map[int]bool{}
	var walk func(int) bool
	walk = func(p int) bool {
		for depth := 0; p > 1 && depth < 4096; depth++ {
			if roots[p] || in[p] {
				return true
			}
			p = parent[p]
		}
		return false
	}
	var out []int
	for pid := range parent {
		if walk(pid) {
			in[pid] = true
			out = append(out, pid)
		}
	}
	return out
}

func allPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// ps answers ClientPsRequested.
func (b *boot) ps() (ipc.Message, error) {
	if b.cg != nil {
		pids, err := b.cg.Pids()
		if err != nil {
			return nil, err
		}
		return ipc.BootPs{Pids: pids}, nil
	}
	return ipc.BootPs{Pids: b.containerPids()}, nil
}

// signalAll signals every container process without a cgroup.
func (b *boot) signalAll(sig unix.Signal) error {
	var firstErr error
	for _, pid := range b.containerPids() {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
