package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ttyOut is `probe tty`.
type ttyOut struct {
	Stdin, Stdout, Stderr bool
	Rows, Cols            int
	Ctty                  bool
	Sid, Pgid             int
}

// consoleSocket listens on a unix socket in e.dir; recv returns the pty
// master a runtime sends there (runc's protocol: a name, the fd as
// SCM_RIGHTS).
func consoleSocket(e *env) (path string, recv func() *os.File) {
	e.t.Helper()
	path = filepath.Join(e.dir, fmt.Sprintf("console-%d.sock", idSeq.Add(1)))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	must(e.t, err)
	e.t.Cleanup(func() { ln.Close() })
	got := make(chan *os.File, 1)
	go func() {
		defer close(got)
		ln.SetDeadline(time.Now().Add(cmdTimeout))
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		got <- recvFd(e.t, c)
	}()
	return path, func() *os.File {
		e.t.Helper()
		f := <-got
		if f == nil {
			e.t.Fatal("no terminal arrived on the console socket")
		}
		e.t.Cleanup(func() { f.Close() })
		return f
	}
}

func recvFd(t *testing.T, c *net.UnixConn) *os.File {
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*4))
	c.SetReadDeadline(time.Now().Add(cmdTimeout))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Errorf("console socket: %v", err)
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Errorf("console socket: %d control messages (%v), want 1", len(msgs), err)
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Errorf("console socket: fds %v (%v), want one", fds, err)
		return nil
	}
	if n == 0 {
		t.Errorf("console socket: the fd came without a name")
	}
	return os.NewFile(uintptr(fds[0]), string(buf[:n]))
}

// readAll reads a pty master until the other side is gone (EIO); it
// returns a func that waits for that and gives the output.
func readAll(t *testing.T, master *os.File) func() string {
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return func() string {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("terminal output did not end")
		}
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

var jsonLine = regexp.MustCompile(`\{[^\n]*\}`)

// decodeTty finds probe tty's JSON in terminal output.
func decodeTty(t *testing.T, out string) ttyOut {
	t.Helper()
	var v ttyOut
	m := jsonLine.FindString(out)
	if m == "" {
		t.Fatalf("no probe tty output in %q", out)
	}
	decodeJSON(t, m, &v)
	return v
}

func checkTty(t *testing.T, v ttyOut, rows, cols int) {
	t.Helper()
	if !v.Stdin || !v.Stdout || !v.Stderr || !v.Ctty {
		t.Errorf("stdio/ctty not the terminal: %+v", v)
	}
	if v.Sid == 0 || v.Sid != v.Pgid {
		t.Errorf("process is not a session leader: %+v", v)
	}
	if rows != 0 && (v.Rows != rows || v.Cols != cols) {
		t.Errorf("terminal is %dx%d, want %dx%d", v.Rows, v.Cols, rows, cols)
	}
}

func withTerminal(s *specsSpec) {
	s.Process.Terminal = true
	s.Process.ConsoleSize = &specs.Box{Height: 30, Width: 100}
}

func TestConsoleSocketCreate(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"tty"}, withTerminal)
	id := e.id()
	sock, recv := consoleSocket(e)
	e.moat("create", "--console-socket", sock, "--bundle", b.dir, id)
	master := recv()
	output := readAll(t, master)
	e.moat("start", id)
	v := decodeTty(t, output())
	checkTty(t, v, 30, 100)
	if v.Sid != 1 {
		t.Errorf("container init's session is %d, want its own (pid 1)", v.Sid)
	}
	e.waitStatus(id, "stopped")
	e.moat("delete", id)
}

// TestConsoleSocketCreateOutputPipe: containerd's shim runs `create
// --console-socket` with its output on a pipe and reads it to EOF. The
// terminal is the container's stdio: create's must not reach the container
// (init held it: create never returned, `ctr run -t` printed nothing and
// `docker rm -f` hung).
func TestConsoleSocketCreateOutputPipe(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"echo", "from-the-tty"}, withTerminal)
	id := e.id()
	sock, recv := consoleSocket(e)
	cmd := moatCmd(e, nil, "create", "--console-socket", sock, "--bundle", b.dir, id)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	must(t, cmd.Start())
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("create: %v: %s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		e.moat("delete", "--force", id)
		<-done
		t.Fatal("create with a console socket never closed its output: the container holds it")
	}
	master := recv()
	output := readAll(t, master)
	e.moat("start", id)
	e.waitStatus(id, "stopped")
	if got := output(); !strings.Contains(got, "from-the-tty") {
		t.Errorf("terminal output %q", got)
	}
	e.moat("delete", id)
}

// openPty makes a pseudo-terminal for the test to play the user's terminal.
func openPty(t *testing.T, rows, cols int) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	must(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	must(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	must(t, err)
	must(t, unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)}))
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// makeRaw puts a terminal in raw mode (no echo, no line editing, ^D is a
// byte), so that what the test writes reaches moat unchanged.
func makeRaw(t *testing.T, f *os.File) {
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	must(t, err)
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag |= unix.CS8
	must(t, unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, tio))
}

// attached runs moat on a terminal the test owns (stdio = the slave, which
// is moat's controlling terminal) and returns its output and exit code.
func attached(e *env, input string, args ...string) (string, int) {
	e.t.Helper()
	master, slave := openPty(e.t, 40, 120)
	makeRaw(e.t, slave)
	cmd := moatCmd(e, nil, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	output := readAll(e.t, master)
	p := startBg(e, cmd)
	slave.Close()
	if input != "" {
		_, err := master.WriteString(input)
		must(e.t, err)
	}
	r := p.wait()
	return output(), r.code
}

func TestRunAttachedTty(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"tty"}, func(s *specsSpec) { s.Process.Terminal = true })
	out, code := attached(e, "", "run", "--bundle", b.dir, e.id())
	if code != 0 {
		t.Fatalf("run with a terminal: exit %d: %q", code, out)
	}
	checkTty(t, decodeTty(t, out), 40, 120)
}

func TestRunAttachedTtyInput(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"cat"}, func(s *specsSpec) { s.Process.Terminal = true })
	out, code := attached(e, "hello moat\n\x04", "run", "--bundle", b.dir, e.id())
	if code != 0 {
		t.Errorf("run probe cat on a terminal: exit %d after ^D", code)
	}
	if !strings.Contains(out, "hello moat") {
		t.Errorf("typed input did not come back: %q", out)
	}
	b = e.newBundle([]string{"exit", "3"}, func(s *specsSpec) { s.Process.Terminal = true })
	if _, code := attached(e, "", "run", "--bundle", b.dir, e.id()); code != 3 {
		t.Errorf("run -t probe exit 3: exit %d", code)
	}
}

func TestExecTtyConsoleSocket(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	sock, recv := consoleSocket(e)
	p := startMoat(e, nil, "exec", "-t", "--console-socket", sock, id, "probe", "tty")
	output := readAll(t, recv())
	if r := p.wait(); r.code != 0 {
		t.Fatalf("exec -t --console-socket: %s", r)
	}
	checkTty(t, decodeTty(t, output()), 0, 0)
}

func TestExecTtyProcessConsoleSize(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	sock, recv := consoleSocket(e)
	proc := writeProcess(e, map[string]any{
		"terminal": true, "consoleSize": map[string]int{"height": 33, "width": 99},
		"args": []string{"/bin/probe", "tty"}, "cwd": "/", "env": []string{"PATH=/bin"},
	})
	p := startMoat(e, nil, "exec", "--console-socket", sock, "--process", proc, id)
	output := readAll(t, recv())
	if r := p.wait(); r.code != 0 {
		t.Fatalf("exec --process (terminal) --console-socket: %s", r)
	}
	checkTty(t, decodeTty(t, output()), 33, 99)
}

// TestExecTtyAttached: `exec -t` on the user's terminal. The size must be
// the user's from the first instruction of the process on.
func TestExecTtyAttached(t *testing.T) {
	e := newEnv(t)
	id, _ := holding(e)
	out, code := attached(e, "", "exec", "-t", id, "probe", "tty")
	if code != 0 {
		t.Fatalf("exec -t: exit %d: %q", code, out)
	}
	checkTty(t, decodeTty(t, out), 40, 120)
	out, code = attached(e, "typed\n\x04", "exec", "--tty", id, "probe", "cat")
	if code != 0 || !strings.Contains(out, "typed") {
		t.Errorf("exec -t probe cat: exit %d, output %q", code, out)
	}
}

func TestTerminalErrors(t *testing.T) {
	e := newEnv(t)
	tty := e.newBundle([]string{"tty"}, withTerminal)
	e.fails("--console-socket", "create", "--bundle", tty.dir, e.id())
	e.fails("--console-socket", "run", "-d", "--bundle", tty.dir, e.id())
	plain := e.newBundle([]string{"true"})
	sock, _ := consoleSocket(e)
	e.fails("process.terminal is false", "create", "--console-socket", sock, "--bundle", plain.dir, e.id())
	e.fails("console socket", "create", "--console-socket", filepath.Join(e.dir, "nosock"), "--bundle", tty.dir, e.id())
	if q := e.moat("list", "-q"); q != "" {
		t.Errorf("failed creates left containers: %q", q)
	}
	id, _ := holding(e)
	e.fails("--console-socket", "exec", "-t", "-d", id, "probe", "tty")
	// Attached to a stdin that is no terminal (here /dev/null), a terminal
	// process could never be reached nor ended: refused at once, saying
	// how to fix the spec, as runc does.
	r := e.fails("stdin is not a terminal", "run", "--bundle", tty.dir, e.id())
	if !strings.Contains(r.stderr, `"terminal": false`) || !strings.Contains(r.stderr, "--tty") {
		t.Errorf("the refusal does not say how to fix the spec: %s", r.stderr)
	}
	e.fails("stdin is not a terminal", "exec", "-t", id, "probe", "tty")
	if q := strings.Fields(e.moat("list", "-q")); len(q) != 1 {
		t.Errorf("refused runs left containers: %q", q)
	}
}
