package e2e

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/seccomp"
)

// TestSeccompNotify: a SCMP_ACT_NOTIFY rule hands the listener to the agent
// at listenerPath with the container process state; the agent's answer is
// what the container's syscall returns.
func TestSeccompNotify(t *testing.T) {
	e := newEnv(t)
	sock := filepath.Join(e.dir, "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	must(t, err)
	defer ln.Close()
	got := make(chan agentResult, 1)
	go runAgent(ln, got)

	b := e.newBundle([]string{"syscall", "getppid", "7"}, func(s *specsSpec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			ListenerPath:  sock, ListenerMetadata: "agent-meta",
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActNotify}},
		}
	})
	out := e.moat("run", "--bundle", b.dir, e.id())
	if !strings.Contains(out, `"ret":4242`) {
		t.Errorf("the notified syscall did not return the agent's answer: %q", out)
	}
	select {
	case r := <-got:
		if r.err != "" {
			t.Fatal(r.err)
		}
		if r.state.Metadata != "agent-meta" || len(r.state.Fds) != 1 || r.state.Fds[0] != specs.SeccompFdName ||
			r.state.State.Status != specs.StateCreated || r.state.Pid == 0 {
			t.Errorf("container process state: %+v", r.state)
		}
		if r.arg0 != 7 {
			t.Errorf("agent saw getppid arg %d, want 7", r.arg0)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent received nothing")
	}
}

func TestSeccompNotifyNeedsListener(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"true"}, func(s *specsSpec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActNotify}}}
	})
	e.fails("listenerPath", "run", "--bundle", b.dir, e.id())
	b.spec.Linux.Seccomp.ListenerPath = "/nonexistent.sock"
	b.spec.Linux.Seccomp.Syscalls[0].Names = []string{"write"}
	b.save(t)
	e.fails("SCMP_ACT_NOTIFY on write", "run", "--bundle", b.dir, e.id())
}

type agentResult struct {
	state specs.ContainerProcessState
	arg0  uint64
	err   string
}

// runAgent accepts one listener, answers one notification with 4242.
func runAgent(ln *net.UnixListener, out chan<- agentResult) {
	var r agentResult
	defer func() { out <- r }()
	ln.SetDeadline(time.Now().Add(60 * time.Second))
	c, err := ln.AcceptUnix()
	if err != nil {
		r.err = "accept: " + err.Error()
		return
	}
	defer c.Close()
	buf, oob := make([]byte, 1<<16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		r.err = "read: " + err.Error()
		return
	}
	if err := json.Unmarshal(buf[:n], &r.state); err != nil {
		r.err = "state: " + err.Error()
		return
	}
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	if len(msgs) != 1 {
		r.err = "no fd received"
		return
	}
	fds, _ := unix.ParseUnixRights(&msgs[0])
	fd := fds[0]
	defer unix.Close(fd)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, _ := unix.Poll(pfd, 30000); n != 1 {
		r.err = "no notification within 30s"
		return
	}
	notif, err := seccomp.NotifReceive(fd)
	if err != nil {
		r.err = err.Error()
		return
	}
	r.arg0 = notif.Data.Args[0]
	if err := seccomp.NotifRespond(fd, &seccomp.NotifResp{ID: notif.ID, Val: 4242}); err != nil {
		r.err = err.Error()
	}
}
