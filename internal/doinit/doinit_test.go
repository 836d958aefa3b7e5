package doinit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/testutil/reexec"
)

// runRole runs the reaper's run() on the command given as JSON and exits
// with the status it returns, as `moat do-init` does.
const runRole = "doinit-run"

func TestMain(m *testing.M) {
	reexec.Main(map[string]func(string) int{
		runRole: func(arg string) int {
			var cmd []string
			if err := json.Unmarshal([]byte(arg), &cmd); err != nil {
				return 99
			}
			return run(Args{Command: cmd, ChangesFD: -1, UID: -1, GID: -1, SeccompFD: -1, ReadyFD: -1}, os.Stderr)
		},
	})
	os.Exit(m.Run())
}

// reaper starts the reaper on command; stdin is /dev/null (no terminal).
func reaper(t *testing.T, ctx context.Context, command ...string) *exec.Cmd {
	t.Helper()
	arg, err := json.Marshal(command)
	if err != nil {
		t.Fatal(err)
	}
	cmd := reexec.Command(ctx, runRole, string(arg))
	cmd.Env = append(cmd.Env, "PATH=/usr/bin:/bin")
	return cmd
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if !errors.As(err, &ee) {
		t.Fatalf("reaper did not run: %v", err)
	}
	return ee.ExitCode()
}

func TestRunExitStatuses(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		command []string
		want    int
		stderr  string
	}{
		{"exit status", []string{"/bin/sh", "-c", "exit 7"}, 7, ""},
		{"signal", []string{"/bin/sh", "-c", "kill -TERM $$"}, 128 + int(unix.SIGTERM), ""},
		{"not found", []string{"moat-no-such-command"}, ExitNotFound, "moat-no-such-command: command not found"},
		{"not executable", []string{notExec}, ExitCannotRun, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			cmd := reaper(t, ctx, tc.command...)
			cmd.Stderr = &stderr
			if got := exitCode(t, cmd.Run()); got != tc.want {
				t.Errorf("exit %d, want %d (stderr %q)", got, tc.want, stderr.String())
			}
			if tc.stderr != "" && !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q does not say %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// A signal sent to the reaper reaches the command, and the reaper exits
// with the command's status, not its own death.
func TestRunForwardsSignals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := reaper(t, ctx, "/bin/sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("command did not start: %q, %v", line, err)
	}
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := exitCode(t, cmd.Wait()); got != 42 {
		t.Errorf("exit %d after SIGTERM to the reaper, want the trap's 42", got)
	}
}

// readStream decodes what streamUpper wrote: entries in order, and each
// file's content.
func readStream(t *testing.T, r io.Reader) ([]ipc.UpperEntry, map[string]string) {
	t.Helper()
	br := bufio.NewReader(r)
	var entries []ipc.UpperEntry
	content := map[string]string{}
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			t.Fatalf("stream ended without its end entry: %v (after %d entries)", err, len(entries))
		}
		var e ipc.UpperEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("entry %q: %v", line, err)
		}
		if e.Type == "end" {
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("%d bytes after the end entry", len(rest))
			}
			return entries, content
		}
		entries = append(entries, e)
		if e.Content {
			buf := make([]byte, e.Size)
			if _, err := io.ReadFull(br, buf); err != nil {
				t.Fatalf("content of %s: %v", e.Path, err)
			}
			content[e.Path] = string(buf)
		}
	}
}

// upperDir builds one entry of each kind streamUpper tells apart.
// Precondition: root (the whiteout is a 0/0 character device).
func upperDir(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test makes a whiteout device node: run it as root (CI does)")
	}
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "file"), []byte("hello"), 0o640))
	must(os.Mkdir(filepath.Join(dir, "opaque"), 0o755))
	must(unix.Setxattr(filepath.Join(dir, "opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(dir, "opaque", "inner"), []byte("in"), 0o600))
	must(os.Symlink("/etc/shadow", filepath.Join(dir, "link")))
	must(unix.Mknod(filepath.Join(dir, "gone"), unix.S_IFCHR|0o000, 0))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	must(f.Truncate(1 << 30))
	must(f.Chmod(0o644))
	must(f.Close())
	return dir
}

func TestStreamUpperDescribesEveryKind(t *testing.T) {
	dir := upperDir(t)
	var buf bytes.Buffer
	if err := streamUpper(dir, &buf, true); err != nil {
		t.Fatal(err)
	}
	entries, content := readStream(t, &buf)
	byPath := map[string]ipc.UpperEntry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	want := map[string]ipc.UpperEntry{
		"/file":         {Path: "/file", Type: "file", Mode: 0o640, Size: 5, Content: true},
		"/opaque":       {Path: "/opaque", Type: "dir", Mode: 0o755, Opaque: true},
		"/opaque/inner": {Path: "/opaque/inner", Type: "file", Mode: 0o600, Size: 2, Content: true},
		"/link":         {Path: "/link", Type: "symlink", Mode: 0o777, Size: int64(len("/etc/shadow")), Target: "/etc/shadow"},
		"/gone":         {Path: "/gone", Type: "whiteout"},
		"/fifo":         {Path: "/fifo", Type: "other", Mode: 0o600},
		// Sparse: its apparent size is not sent (it could fill the host).
		"/sparse": {Path: "/sparse", Type: "file", Mode: 0o644, Size: 1 << 30},
	}
	if len(byPath) != len(want) {
		t.Errorf("got %d entries, want %d: %+v", len(byPath), len(want), entries)
	}
	for p, w := range want {
		if got := byPath[p]; got != w {
			t.Errorf("%s: got %+v, want %+v", p, got, w)
		}
	}
	if content["/file"] != "hello" || content["/opaque/inner"] != "in" || len(content) != 2 {
		t.Errorf("contents %q, want /file and /opaque/inner only", content)
	}
}

func TestStreamUpperWithoutContent(t *testing.T) {
	dir := upperDir(t)
	var buf bytes.Buffer
	if err := streamUpper(dir, &buf, false); err != nil {
		t.Fatal(err)
	}
	entries, content := readStream(t, &buf)
	if len(content) != 0 {
		t.Errorf("content sent without being asked: %q", content)
	}
	if len(entries) != 7 {
		t.Errorf("%d entries, want 7: %+v", len(entries), entries)
	}
}

// An entry that cannot be read is reported in the stream, and the walk
// goes on.
func TestStreamUpperReportsUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ok"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := streamUpper(filepath.Join(dir, "missing"), &buf, true); err != nil {
		t.Fatal(err)
	}
	entries, _ := readStream(t, &buf)
	if len(entries) != 1 || entries[0].Type != "error" || !strings.Contains(entries[0].Target, "no such file") {
		t.Errorf("a missing upper layer gave %+v, want one error entry", entries)
	}
}
