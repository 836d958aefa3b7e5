package log

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func jsonLines(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestJSONFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, FormatJSON, false, "cli")
	if err != nil {
		t.Fatal(err)
	}
	l.Error("container failed", "id", "c1")
	l.Warn("careful")
	l.Info("hello")
	l.Debug("dropped")
	lines := jsonLines(t, buf.Bytes())
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (debug dropped):\n%s", len(lines), buf.String())
	}
	for i, want := range []struct{ level, msg string }{{"error", "container failed"}, {"warning", "careful"}, {"info", "hello"}} {
		m := lines[i]
		if m["level"] != want.level || m["msg"] != want.msg || m["role"] != "cli" {
			t.Errorf("line %d = %v, want level %q msg %q role cli", i, m, want.level, want.msg)
		}
		ts, ok := m["time"].(string)
		if !ok {
			t.Errorf("line %d has no time: %v", i, m)
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %d time %q: %v", i, ts, err)
		}
	}
	if lines[0]["id"] != "c1" {
		t.Errorf("attribute lost: %v", lines[0])
	}
	// Exactly the shape containerd's shim parses: one object per line.
	if strings.Count(buf.String(), "\n") != 3 {
		t.Errorf("not one line per record:\n%s", buf.String())
	}
}

func TestDebugEnabled(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, FormatJSON, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if !Enabled(l) {
		t.Error("Enabled = false with debug")
	}
	l.Debug("details", "n", 1)
	lines := jsonLines(t, buf.Bytes())
	if len(lines) != 1 || lines[0]["level"] != "debug" || lines[0]["msg"] != "details" {
		t.Fatalf("debug line = %v", lines)
	}
	if _, ok := lines[0]["role"]; ok {
		t.Errorf("role present without a role: %v", lines[0])
	}
	quiet, _ := New(&buf, FormatJSON, false, "boot")
	if Enabled(quiet) {
		t.Error("Enabled = true without debug")
	}
}

func TestTextFormat(t *testing.T) {
	for _, format := range []string{FormatText, ""} {
		var buf bytes.Buffer
		l, err := New(&buf, format, false, "boot")
		if err != nil {
			t.Fatal(err)
		}
		l.Error("it broke", "pid", 7)
		l.Warn("hm")
		l.Debug("not shown")
		out := buf.String()
		for _, want := range []string{"level=error", `msg="it broke"`, "pid=7", "role=boot", "level=warning", "msg=hm", "time="} {
			if !strings.Contains(out, want) {
				t.Errorf("format %q: output lacks %q:\n%s", format, want, out)
			}
		}
		if strings.Contains(out, "not shown") || strings.Contains(out, "ERROR") || strings.Contains(out, "WARN") {
			t.Errorf("format %q: unexpected output:\n%s", format, out)
		}
		if strings.HasPrefix(strings.TrimSpace(out), "{") {
			t.Errorf("format %q produced JSON", format)
		}
	}
}

func TestUnknownFormat(t *testing.T) {
	l, err := New(&bytes.Buffer{}, "xml", false, "cli")
	if err == nil || l != nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Fatalf("New(xml) = %v, %v", l, err)
	}
	if _, err := FromFD(-1, "yaml", false, ""); err == nil {
		t.Error("FromFD with an unknown format succeeded")
	}
}

func TestFromFD(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// FromFD takes ownership of a duplicate, as for a donated --log-fd.
	fd, err := dupFD(w)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	l, err := FromFD(fd, FormatJSON, false, "init")
	if err != nil {
		t.Fatal(err)
	}
	l.Error("from init")
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil || m["role"] != "init" || m["level"] != "error" || m["msg"] != "from init" {
		t.Errorf("line %q: %v", line, err)
	}
	if l, err := FromFD(-1, FormatText, false, "x"); err != nil || l == nil {
		t.Errorf("FromFD(-1) = %v, %v", l, err)
	}
}

func TestDiscard(t *testing.T) {
	l := Discard()
	l.Error("nothing")
	if Enabled(l) {
		t.Error("Discard logs debug")
	}
}

func dupFD(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = syscall.Dup(int(fd)) }); err != nil {
		return -1, err
	}
	return nfd, derr
}
