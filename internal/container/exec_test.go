package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/spec"
)

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in       string
		uid, gid uint32
	}{
		{"1000", 1000, 7}, // the gid is kept when not given
		{"1000:1001", 1000, 1001},
		{"0:0", 0, 0},
		{"4294967295:4294967295", 4294967295, 4294967295},
	} {
		u := specs.User{UID: 5, GID: 7, AdditionalGids: []uint32{10, 11}, Umask: ptrU32(0o22)}
		if err := parseUser(tc.in, &u); err != nil {
			t.Errorf("parseUser(%q): %v", tc.in, err)
			continue
		}
		if u.UID != tc.uid || u.GID != tc.gid || u.AdditionalGids != nil {
			t.Errorf("parseUser(%q) = %+v", tc.in, u)
		}
		if u.Umask == nil || *u.Umask != 0o22 {
			t.Errorf("parseUser(%q) lost the umask", tc.in)
		}
	}
	for _, bad := range []string{"", "root", "1000:", ":1000", "1:x", "-1", "4294967296", "1:2:3", " 1", "1 "} {
		u := specs.User{}
		if err := parseUser(bad, &u); err == nil || !strings.Contains(err.Error(), "--user") {
			t.Errorf("parseUser(%q) = %v, %+v", bad, err, u)
		}
	}
}

func ptrU32(v uint32) *uint32 { return &v }

func TestAddCaps(t *testing.T) {
	base := &specs.LinuxCapabilities{
		Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
		Inheritable: nil, Ambient: []string{"CAP_KILL"},
	}
	saved := *base
	got := addCaps(base, []string{"CAP_NET_ADMIN", "SYS_PTRACE", "net_raw"})
	want := []string{"CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_NET_RAW"}
	for name, set := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted} {
		if !reflect.DeepEqual(set, want) {
			t.Errorf("%s = %q, want %q", name, set, want)
		}
	}
	if !reflect.DeepEqual(got.Inheritable, want[1:]) {
		t.Errorf("inheritable = %q", got.Inheritable)
	}
	if !reflect.DeepEqual(got.Ambient, []string{"CAP_KILL"}) {
		t.Errorf("ambient changed: %q", got.Ambient)
	}
	if !reflect.DeepEqual(*base, saved) || len(base.Bounding) != 1 {
		t.Errorf("the container's capabilities were modified: %+v", *base)
	}
	for _, n := range got.Bounding {
		if _, ok := spec.CapabilityByName(n); !ok {
			t.Errorf("addCaps produced unknown capability %q", n)
		}
	}
	fromNil := addCaps(nil, []string{"CAP_CHOWN"})
	if !reflect.DeepEqual(fromNil.Bounding, []string{"CAP_CHOWN"}) || fromNil.Ambient != nil {
		t.Errorf("addCaps(nil) = %+v", fromNil)
	}
}

// --cap takes the capability as docker and runc users write it, in any case,
// with or without the CAP_ prefix.
func TestAddCapsLowercasePrefix(t *testing.T) {
	got := addCaps(nil, []string{"cap_kill", "Cap_Chown"})
	if want := []string{"CAP_KILL", "CAP_CHOWN"}; !reflect.DeepEqual(got.Bounding, want) {
		t.Errorf("bounding = %q, want %q", got.Bounding, want)
	}
}

func containerSpec() *specs.Spec {
	return &specs.Spec{Process: &specs.Process{
		Terminal:    true,
		ConsoleSize: &specs.Box{Height: 24, Width: 80},
		Args:        []string{"sh"},
		Env:         []string{"PATH=/bin", "A=1"},
		Cwd:         "/",
		User:        specs.User{UID: 5, GID: 6, AdditionalGids: []uint32{7}},
		Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
		},
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 10}},
	}}
}

func TestExecProcessOverrides(t *testing.T) {
	s := containerSpec()
	saved, _ := json.Marshal(s)
	p, err := execProcess(s, ExecOptions{
		Args: []string{"ls", "-l"}, Env: []string{"B=2", "A=override"}, Cwd: "/tmp", User: "10:20",
		AddCaps: []string{"NET_ADMIN"}, Tty: false, NoNewPrivs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Args, []string{"ls", "-l"}) {
		t.Errorf("args %q", p.Args)
	}
	if want := []string{"PATH=/bin", "A=1", "B=2", "A=override"}; !reflect.DeepEqual(p.Env, want) {
		t.Errorf("env %q, want %q (appended)", p.Env, want)
	}
	if p.Cwd != "/tmp" || p.Terminal || p.ConsoleSize != nil || !p.NoNewPrivileges {
		t.Errorf("cwd %q terminal %v consoleSize %v nnp %v", p.Cwd, p.Terminal, p.ConsoleSize, p.NoNewPrivileges)
	}
	if p.User.UID != 10 || p.User.GID != 20 || p.User.AdditionalGids != nil {
		t.Errorf("user %+v", p.User)
	}
	if !reflect.DeepEqual(p.Capabilities.Bounding, []string{"CAP_KILL", "CAP_NET_ADMIN"}) {
		t.Errorf("caps %+v", p.Capabilities)
	}
	if !reflect.DeepEqual(p.Rlimits, s.Process.Rlimits) {
		t.Errorf("rlimits not inherited: %+v", p.Rlimits)
	}
	if after, _ := json.Marshal(s); string(after) != string(saved) {
		t.Errorf("the container's spec was modified:\n%s\n%s", saved, after)
	}

	// No overrides: the container's process with the new command.
	p, err = execProcess(s, ExecOptions{Args: []string{"true"}, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Cwd != "/" || p.User.UID != 5 || p.User.GID != 6 || !reflect.DeepEqual(p.User.AdditionalGids, []uint32{7}) ||
		!p.Terminal || !reflect.DeepEqual(p.Env, s.Process.Env) || p.NoNewPrivileges {
		t.Errorf("defaults not inherited: %+v", p)
	}
	p, _ = execProcess(s, ExecOptions{Args: []string{"true"}, User: "42"})
	if p.User.UID != 42 || p.User.GID != 6 {
		t.Errorf("--user 42: %+v", p.User)
	}
}

func TestExecProcessErrors(t *testing.T) {
	s := containerSpec()
	for _, tc := range []struct {
		name    string
		spec    *specs.Spec
		o       ExecOptions
		want    string
		invalid bool
	}{
		{"no command", s, ExecOptions{}, "no command", false},
		{"no spec", nil, ExecOptions{Args: []string{"true"}}, "no process", false},
		{"no process", &specs.Spec{}, ExecOptions{Args: []string{"true"}}, "no process", false},
		{"relative cwd", s, ExecOptions{Args: []string{"true"}, Cwd: "tmp"}, "process.cwd", true},
		{"bad env", s, ExecOptions{Args: []string{"true"}, Env: []string{"NOEQUALS"}}, "process.env[2]", true},
		{"bad user", s, ExecOptions{Args: []string{"true"}, User: "nobody"}, "--user", false},
		{"unknown cap", s, ExecOptions{Args: []string{"true"}, AddCaps: []string{"CAP_FLY"}}, "CAP_FLY", true},
		{"empty program", s, ExecOptions{Args: []string{""}}, "process.args[0]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execProcess(tc.spec, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("execProcess = %v, want %q", err, tc.want)
			}
			if tc.invalid && !errors.Is(err, spec.ErrInvalid) {
				t.Errorf("%v is not spec.ErrInvalid", err)
			}
		})
	}
}

func TestExecProcessFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	good := write("good.json", `{"args": ["/bin/echo", "hi"], "cwd": "/work", "env": ["X=1"], "terminal": true, "user": {"uid": 3, "gid": 4}}`)
	// --process wins over everything else on the command line.
	p, err := execProcess(containerSpec(), ExecOptions{ProcessFile: good, Args: []string{"ignored"}, Env: []string{"Y=2"}, Cwd: "/ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Args, []string{"/bin/echo", "hi"}) || p.Cwd != "/work" || !reflect.DeepEqual(p.Env, []string{"X=1"}) ||
		!p.Terminal || p.User.UID != 3 || p.User.GID != 4 {
		t.Errorf("process from file = %+v", p)
	}
	if _, err := execProcess(nil, ExecOptions{ProcessFile: good}); err != nil {
		t.Errorf("--process needs no container process: %v", err)
	}
	for _, tc := range []struct {
		name, content, want string
		invalid             bool
	}{
		{"malformed", `{"args": [`, "--process", true},
		{"wrong type", `{"args": "sh", "cwd": "/"}`, "--process", true},
		{"empty args", `{"args": [], "cwd": "/"}`, "process.args", true},
		{"relative cwd", `{"args": ["sh"], "cwd": "here"}`, "process.cwd", true},
		{"missing cwd", `{"args": ["sh"]}`, "process.cwd", true},
		{"bad rlimit", `{"args": ["sh"], "cwd": "/", "rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}`, "RLIMIT_NOPE", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execProcess(containerSpec(), ExecOptions{ProcessFile: write(tc.name+".json", tc.content)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.invalid && !errors.Is(err, spec.ErrInvalid) {
				t.Errorf("%v is not spec.ErrInvalid", err)
			}
		})
	}
	_, err = execProcess(containerSpec(), ExecOptions{ProcessFile: filepath.Join(dir, "missing.json")})
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "--process") {
		t.Errorf("missing --process file: %v", err)
	}
}

func TestWritePidFile(t *testing.T) {
	if err := writePidFile("", 1); err != nil {
		t.Errorf("empty path: %v", err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "boot.pid")
	if err := writePidFile(p, 12345); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != "12345" {
		t.Errorf("pid file holds %q", data)
	}
	if err := writePidFile(p, 678); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(p); string(data) != "678" {
		t.Errorf("rewritten pid file holds %q", data)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "boot.pid" {
		t.Errorf("directory holds %v: a temporary file was left", ents)
	}
	t.Chdir(dir)
	if err := writePidFile("rel.pid", 9); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "rel.pid")); string(data) != "9" {
		t.Errorf("relative pid file holds %q", data)
	}
	if err := writePidFile(filepath.Join(dir, "no", "such", "dir", "pid"), 1); err == nil || !strings.Contains(err.Error(), "pid file") {
		t.Errorf("pid file in a missing directory: %v", err)
	}
}

// A reader polling the pid file (as a shim does) never sees it empty or
// half-written.
func TestWritePidFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pid")
	if err := writePidFile(p, 100000); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	bad := make(chan string, 1)
	go func() {
		defer close(bad)
		for {
			select {
			case <-done:
				return
			default:
			}
			data, err := os.ReadFile(p)
			if err != nil {
				bad <- err.Error()
				return
			}
			if n, err := strconv.Atoi(string(data)); err != nil || n < 100000 || n > 100299 {
				bad <- fmt.Sprintf("read %q", data)
				return
			}
		}
	}()
	for i := 0; i < 300; i++ {
		if err := writePidFile(p, 100000+i); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if msg, ok := <-bad; ok {
		t.Errorf("reader saw a torn pid file: %s", msg)
	}
}

// extraFiles wraps inherited descriptors 3.. in *os.File; in this test
// process those numbers belong to the Go runtime, so it runs in a child that
// inherits three pipes at 3, 4 and 5.
func TestExtraFiles(t *testing.T) {
	for _, tc := range []struct {
		name       string
		preserve   int
		env        []string // LISTEN_PID=self means the child's own pid
		wantNames  []string
		wantListen int
	}{
		{"nothing", 0, nil, nil, 0},
		{"preserve", 2, nil, []string{"preserved-3", "preserved-4"}, 0},
		{"preserve and listen", 1, []string{"LISTEN_FDS=2", "LISTEN_PID=self"}, []string{"preserved-3", "listen-4", "listen-5"}, 2},
		{"listen without pid", 0, []string{"LISTEN_FDS=1"}, []string{"listen-3"}, 1},
		{"listen for another pid", 0, []string{"LISTEN_FDS=2", "LISTEN_PID=1"}, nil, 0},
		{"listen junk", 1, []string{"LISTEN_FDS=two", "LISTEN_PID=self"}, []string{"preserved-3"}, 0},
		{"listen zero", 0, []string{"LISTEN_FDS=0", "LISTEN_PID=self"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var readers, writers []*os.File
			for i := 0; i < 3; i++ {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				readers, writers = append(readers, r), append(writers, w)
				defer r.Close()
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestExtraFilesHelper$", "-test.count=1")
			cmd.ExtraFiles = writers
			cmd.Env = []string{"MOAT_TEST_EXTRAFILES=" + strconv.Itoa(tc.preserve)}
			cmd.Env = append(cmd.Env, tc.env...)
			out, err := runHelper(cmd, writers)
			if err != nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			var res helperResult
			if err := json.Unmarshal(lastLine(out), &res); err != nil {
				t.Fatalf("helper output %q: %v", out, err)
			}
			if res.Listen != tc.wantListen || !reflect.DeepEqual(res.Names, tc.wantNames) {
				t.Errorf("extraFiles = %q, %d; want %q, %d", res.Names, res.Listen, tc.wantNames, tc.wantListen)
			}
			// Each file is the descriptor its name says: the child wrote its
			// name through it.
			for i, name := range res.Names {
				fd := 3 + i
				data, _ := io.ReadAll(readers[fd-3])
				if string(data) != name {
					t.Errorf("fd %d carried %q, want %q", fd, data, name)
				}
			}
		})
	}
}

type helperResult struct {
	Names  []string `json:"names"`
	Listen int      `json:"listen"`
}

// runHelper runs cmd, closing the parent's copies of the donated files once
// the child has them, and returns its output.
func runHelper(cmd *exec.Cmd, donated []*os.File) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	for _, f := range donated {
		f.Close()
	}
	if err == nil {
		err = cmd.Wait()
	}
	return []byte(out.String()), err
}

func lastLine(out []byte) []byte {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "{") {
			return []byte(l)
		}
	}
	return nil
}

// TestExtraFilesHelper is the child of TestExtraFiles.
func TestExtraFilesHelper(t *testing.T) {
	v := os.Getenv("MOAT_TEST_EXTRAFILES")
	if v == "" {
		return
	}
	preserve, _ := strconv.Atoi(v)
	if os.Getenv("LISTEN_PID") == "self" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	files, listen := extraFiles(preserve)
	res := helperResult{Listen: listen}
	for i, f := range files {
		if f.Fd() != uintptr(3+i) {
			t.Fatalf("file %d has fd %d", i, f.Fd())
		}
		res.Names = append(res.Names, f.Name())
		if _, err := f.Write([]byte(f.Name())); err != nil {
			t.Fatalf("write through %s: %v", f.Name(), err)
		}
	}
	data, _ := json.Marshal(res)
	fmt.Println(string(data))
}
