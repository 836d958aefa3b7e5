package boot

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/moat-sandbox/moat/internal/procutil"
)

// descendants follows a root only under its own start time: a root whose
// pid now belongs to another process (simulated by a wrong start time)
// brings in nothing, so cgroup-less kill --all cannot reach a host tree.
func TestDescendantsCheckRootStart(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo started; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	buf := make([]byte, 8)
	out.Read(buf) // the child sleep exists once "started" is printed
	root := cmd.Process.Pid
	start, err := procutil.StartTime(root)
	if err != nil {
		t.Fatal(err)
	}
	var child procutil.Proc
	deadline := time.Now().Add(10 * time.Second)
	for child.Pid == 0 && time.Now().Before(deadline) {
		for _, p := range descendants(map[int]uint64{root: start}) {
			if p.Pid != root {
				child = p
			}
		}
	}
	if child.Pid == 0 {
		t.Fatal("the shell's sleep child was not found below its root")
	}
	defer procutil.SignalIf(child.Pid, child.Start, 9)
	defer procutil.SignalIf(root, start, 9)
	for _, wrong := range []uint64{start + 1, 0} {
		got := descendants(map[int]uint64{root: wrong})
		if slices.ContainsFunc(got, func(p procutil.Proc) bool { return p.Pid == root || p.Pid == child.Pid }) {
			t.Errorf("root with start time %d (the process's is %d) brought in %v", wrong, start, got)
		}
	}
}
