package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/ipc"
)

func store(t *testing.T) *Store {
	t.Helper()
	st, err := Open(filepath.Join(t.TempDir(), "state", "root"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestOpen(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	st, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("root %s: %v %v", root, fi.Mode(), err)
	}
	if st.Root != root {
		t.Errorf("Root = %q", st.Root)
	}
	if _, err := Open(root); err != nil {
		t.Errorf("opening an existing root: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Open(f); err == nil {
		t.Error("a file as state root accepted")
	}
}

func TestValidateID(t *testing.T) {
	good := []string{"a", "abc", "ABC-123", "a_b", "a+b", "a.b", "..a", "a..", "-", "_", "0", strings.Repeat("x", 1024),
		"3f2a9c0e1b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a"}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v", shorten(id), err)
		}
	}
	bad := []string{"", ".", "..", "a/b", "/a", "a/", "../a", "a b", " a", "a\n", "a:b", "a,b", "a@b", "a*", "a\x00b",
		"ä", "a~", strings.Repeat("x", 1025)}
	for _, id := range bad {
		err := ValidateID(id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", shorten(id), err)
		}
	}
}

func shorten(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

func TestCreate(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("c1")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if s.ID != "c1" || s.Dir() != filepath.Join(st.Root, "c1") || s.Owner != os.Geteuid() {
		t.Errorf("state %+v dir %q", s, s.Dir())
	}
	if s.ControllerPath() != filepath.Join(st.Root, "c1", ControllerName) {
		t.Errorf("ControllerPath = %q", s.ControllerPath())
	}
	if fi, err := os.Stat(s.Dir()); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v %v", fi, err)
	}
	_, _, err = st.Create("c1")
	if !errors.Is(err, ErrExist) || !strings.Contains(err.Error(), "c1") {
		t.Errorf("second Create = %v, want ErrExist", err)
	}
}

func TestCreateInvalidIDMakesNothing(t *testing.T) {
	st := store(t)
	for _, id := range []string{"../escape", "a/b", "..", ""} {
		if _, _, err := st.Create(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Create(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	ents, _ := os.ReadDir(st.Root)
	if len(ents) != 0 {
		t.Errorf("root has entries after invalid creates: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(st.Root), "escape")); err == nil {
		t.Error("Create(../escape) made a directory outside the root")
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("round-trip")
	if err != nil {
		t.Fatal(err)
	}
	s.Bundle = "/b"
	s.Created = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	s.BootPid, s.BootStart, s.InitPid, s.InitStart = 100, 1000, 101, 1001
	s.Started, s.Rootless = true, true
	s.Cgroup = json.RawMessage(`{"path":"/sys/fs/cgroup/x"}`)
	s.Plan = &ipc.Plan{
		Spec: &specs.Spec{Version: "1.0.2", Hostname: "h", Annotations: map[string]string{"k": "v"},
			Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}}}},
		Rootfs: "/b/rootfs",
		Gofer: &ipc.BootGoferConfig{Rootfs: "/b/rootfs", Overlay: "memory", Cwd: "/",
			Binds:       []ipc.GoferBind{{SpecIndex: 0, Source: "/srv/data", Destination: "/data", ReadOnly: true}},
			MountPoints: []ipc.MountPoint{{Destination: "/data"}}},
		Network: &ipc.NetworkPlan{DNSServers: []string{"192.0.2.53:53"}},
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	got, err := st.Load("round-trip")
	if err != nil {
		t.Fatal(err)
	}
	if got.Dir() != s.Dir() {
		t.Errorf("Dir after Load = %q, want %q", got.Dir(), s.Dir())
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), "state.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state.json: %v %v", fi, err)
	}
	ents, _ := os.ReadDir(s.Dir())
	for _, e := range ents {
		if e.Name() != "state.json" {
			t.Errorf("stray file %q after Save", e.Name())
		}
	}
	// The documented fields carry the documented names.
	data, _ := os.ReadFile(filepath.Join(s.Dir(), "state.json"))
	var m map[string]any
	json.Unmarshal(data, &m)
	for _, k := range []string{"id", "bundle", "created", "owner", "bootPid", "initPid", "started", "plan"} {
		if _, ok := m[k]; !ok {
			t.Errorf("state.json lacks %q: %s", k, data)
		}
	}
	// Saving again replaces the file.
	got.Started = false
	if err := got.Save(); err != nil {
		t.Fatal(err)
	}
	again, _ := st.Load("round-trip")
	if again.Started {
		t.Error("second Save not visible")
	}
}

// A state.json of a moat from before the plan (the spec and the rootfs at
// the top) is read compatibly: its plan is made of those two.
func TestLoadLegacyState(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("legacy")
	if err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	old := `{"id":"legacy","bundle":"/b","rootfs":"/b/rootfs","created":"2024-05-06T07:08:09Z","owner":0,` +
		`"bootPid":100,"bootStart":1000,"initPid":101,"initStart":1001,"started":true,` +
		`"spec":{"ociVersion":"1.0.2","annotations":{"k":"v"},"process":{"args":["sh"],"cwd":"/"}}}`
	if err := os.WriteFile(filepath.Join(s.Dir(), "state.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load("legacy")
	if err != nil {
		t.Fatal(err)
	}
	if got.Rootfs() != "/b/rootfs" || got.Spec() == nil || got.Spec().Annotations["k"] != "v" ||
		got.Spec().Process.Args[0] != "sh" || got.Plan.Gofer != nil || got.InitPid != 101 || !got.Started {
		t.Errorf("legacy state read as %+v (plan %+v)", got, got.Plan)
	}
}

func TestLoadStates(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("creating")
	if err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	got, err := st.Load("creating")
	if err != nil {
		t.Fatalf("Load of a directory without state.json: %v", err)
	}
	if got.ID != "creating" || got.Dir() != s.Dir() || got.BootPid != 0 || got.Spec() != nil || got.Rootfs() != "" {
		t.Errorf("creating state = %+v", got)
	}
	if _, err := st.Load("missing"); !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
	if _, err := st.Load("../x"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Load(../x) = %v, want ErrInvalidID", err)
	}
	os.WriteFile(filepath.Join(s.Dir(), "state.json"), []byte(`{"id": "creating", "initPid": "oops"`), 0o600)
	_, err = st.Load("creating")
	if err == nil || !strings.Contains(err.Error(), "corrupt") || errors.Is(err, ErrNotExist) {
		t.Errorf("Load of a corrupt state.json = %v", err)
	}
}

func TestLoadLockedContention(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("locked")
	if err != nil {
		t.Fatal(err)
	}
	s.BootPid = 77
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	type result struct {
		s   *State
		lk  *Lock
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		s, lk, err := st.LoadLocked("locked")
		done <- result{s, lk, err, time.Now()}
	}()
	select {
	case r := <-done:
		t.Fatalf("LoadLocked returned while the lock was held: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	released := time.Now()
	lk.Unlock()
	lk.Unlock() // idempotent
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.at.Before(released) {
			t.Error("LoadLocked returned before the release")
		}
		if r.s.BootPid != 77 {
			t.Errorf("LoadLocked state %+v", r.s)
		}
		// It holds the lock now: a third taker waits in turn.
		third := make(chan error, 1)
		go func() {
			_, lk3, err := st.LoadLocked("locked")
			if err == nil {
				lk3.Unlock()
			}
			third <- err
		}()
		select {
		case err := <-third:
			t.Fatalf("third LoadLocked did not wait: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		r.lk.Unlock()
		select {
		case err := <-third:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("third LoadLocked still waiting after release")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LoadLocked still waiting 5s after the release")
	}
	var nilLock *Lock
	nilLock.Unlock() // must not panic
}

func TestLoadLockedErrors(t *testing.T) {
	st := store(t)
	if _, _, err := st.LoadLocked("nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("LoadLocked(missing) = %v, want ErrNotExist", err)
	}
	if _, _, err := st.LoadLocked("a/b"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("LoadLocked(a/b) = %v, want ErrInvalidID", err)
	}
	s, lk, _ := st.Create("bad")
	lk.Unlock()
	os.WriteFile(filepath.Join(s.Dir(), "state.json"), []byte("{"), 0o600)
	if _, _, err := st.LoadLocked("bad"); err == nil {
		t.Error("LoadLocked of a corrupt state succeeded")
	}
	// The failed LoadLocked released the lock.
	ok := make(chan error, 1)
	go func() {
		l, err := lockDir(s.Dir(), time.Second)
		if err == nil {
			l.Unlock()
		}
		ok <- err
	}()
	if err := <-ok; err != nil {
		t.Errorf("lock left held after a failed LoadLocked: %v", err)
	}
}

func TestLockTimeout(t *testing.T) {
	st := store(t)
	s, lk, err := st.Create("held")
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	start := time.Now()
	_, err = lockDir(s.Dir(), 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "locked by another moat command") {
		t.Fatalf("lockDir on a held lock = %v", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
		t.Errorf("waited %s for a 100ms timeout", el)
	}
}

func TestRemove(t *testing.T) {
	st := store(t)
	s, lk, _ := st.Create("gone")
	s.Save()
	os.WriteFile(filepath.Join(s.Dir(), BootLogName), []byte("log"), 0o600)
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	lk.Unlock()
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("dir still there: %v", err)
	}
	if _, err := st.Load("gone"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Load after Remove = %v", err)
	}
	if err := s.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestList(t *testing.T) {
	st := store(t)
	ids, err := st.List()
	if err != nil || len(ids) != 0 {
		t.Fatalf("empty List = %v, %v", ids, err)
	}
	for _, id := range []string{"zeta", "alpha", "Mid", "b-2", "b-10"} {
		_, lk, err := st.Create(id)
		if err != nil {
			t.Fatal(err)
		}
		lk.Unlock()
	}
	os.WriteFile(filepath.Join(st.Root, "afile"), nil, 0o600)
	os.Mkdir(filepath.Join(st.Root, "not an id"), 0o700)
	os.Mkdir(filepath.Join(st.Root, "a:b"), 0o700)
	os.Symlink(filepath.Join(st.Root, "alpha"), filepath.Join(st.Root, "link"))
	ids, err = st.List()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Mid", "alpha", "b-10", "b-2", "zeta"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("List = %q, want %q", ids, want)
	}
	missing := &Store{Root: filepath.Join(t.TempDir(), "none")}
	if ids, err := missing.List(); err != nil || ids != nil {
		t.Errorf("List of a missing root = %v, %v", ids, err)
	}
}
