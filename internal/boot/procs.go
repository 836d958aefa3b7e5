package boot

import (
	"os"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/procutil"
)

// containerPids lists the container's processes when there is no cgroup to
// ask (rootless without delegation): with its own pid namespace, every
// process in it; without one, init's descendants and the exec'd processes,
// never anything else of the host.
func (b *boot) containerPids() []procutil.Proc {
	if b.newPidNS() {
		return pidsInNamespace(b.init.ns[specs.PIDNamespace])
	}
	b.mu.Lock()
	roots := map[int]uint64{b.init.pid: b.init.start}
	for pid, start := range b.execPids {
		roots[pid] = start
	}
	b.mu.Unlock()
	return descendants(roots)
}

// pidsInNamespace scans /proc for processes whose pid namespace is ns's.
func pidsInNamespace(ns *os.File) []procutil.Proc {
	if ns == nil {
		return nil
	}
	var want unix.Stat_t
	if unix.Fstat(int(ns.Fd()), &want) != nil {
		return nil
	}
	var out []procutil.Proc
	for _, pid := range allPids() {
		// The start time first: if the namespace check then still finds
		// the container's namespace, the start time is that process's (a
		// host process taking the pid in between fails the check).
		start, err := procutil.StartTime(pid)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+strconv.Itoa(pid)+"/ns/pid", &st) != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		out = append(out, procutil.Proc{Pid: pid, Start: start})
	}
	return out
}

// descendants returns roots and every process below them. A root counts
// only under its start time: init or an exec'd process already reaped may
// have its pid reused by a host process, whose tree is not the container's.
func descendants(roots map[int]uint64) []procutil.Proc {
	parent := map[int]int{}
	started := map[int]uint64{}
	for _, pid := range allPids() {
		if ppid, start, err := procutil.ParentAndStart(pid); err == nil {
			parent[pid], started[pid] = ppid, start
		}
	}
	in := map[int]bool{}
	var walk func(int) bool
	walk = func(p int) bool {
		for depth := 0; p > 1 && depth < 4096; depth++ {
			if start, ok := roots[p]; (ok && start != 0 && started[p] == start) || in[p] {
				return true
			}
			p = parent[p]
		}
		return false
	}
	var out []procutil.Proc
	for pid := range parent {
		if walk(pid) {
			in[pid] = true
			out = append(out, procutil.Proc{Pid: pid, Start: started[pid]})
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
	var pids []int
	for _, p := range b.containerPids() {
		pids = append(pids, p.Pid)
	}
	return ipc.BootPs{Pids: pids}, nil
}

// signalAll signals every container process without a cgroup. Each is
// signalled only if it is still the process that was listed: a process of
// the container that exits between the scan and the signal may have its
// pid taken by a process of the host.
func (b *boot) signalAll(sig unix.Signal) error {
	var firstErr error
	for _, p := range b.containerPids() {
		if err := procutil.SignalIf(p.Pid, p.Start, sig); err != nil && err != unix.ESRCH && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
