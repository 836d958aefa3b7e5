package do

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostDir is a temporary directory outside /tmp (which the sandbox has its
// own of: nothing under it is hidden or served).
func hostDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "moat-do-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testHost is a host whose home is a temporary directory holding .ssh and
// .netrc.
func testHost(t *testing.T) (*Host, string) {
	t.Helper()
	dir := hostDir(t)
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".netrc"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	h := &Host{UID: 0, GID: 0, Home: home,
		EmptyFile: func() (string, error) { return empty, nil }}
	return h, dir
}

func destinations(s *specs.Spec) []string {
	var out []string
	for _, m := range s.Mounts {
		out = append(out, m.Destination)
	}
	return out
}

func mountAt(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestGenerateFiles(t *testing.T) {
	h, _ := testHost(t)
	proj := filepath.Join(h.Home, "proj")
	if err := os.Mkdir(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	o := &Options{Args: []string{"true"}, Cwd: proj, Exe: "/moat", RW: []string{"."}, Hide: []string{h.Home},
		RO: []string{filepath.Join(h.Home, ".netrc")}}
	p, err := Generate(o, h)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec
	// The hidden home comes before what is mounted below it.
	d := destinations(s)
	idx := func(p string) int {
		for i, x := range d {
			if x == p {
				return i
			}
		}
		t.Fatalf("%s not mounted: %v", p, d)
		return -1
	}
	if !(idx(h.Home) < idx(proj) && idx(h.Home) < idx(filepath.Join(h.Home, ".ssh"))) {
		t.Errorf("a parent is mounted after its child: %v", d)
	}
	if m := mountAt(s, proj); m.Type != "bind" || !strings.Contains(strings.Join(m.Options, ","), "rw") {
		t.Errorf("--rw .: %+v", m)
	}
	if m := mountAt(s, h.Home); m.Type != "tmpfs" || strings.Contains(strings.Join(m.Options, ","), "ro") {
		t.Errorf("a hidden parent of mounted paths must be a writable tmpfs (for their mount points): %+v", m)
	}
	if m := mountAt(s, filepath.Join(h.Home, ".ssh")); m.Type != "tmpfs" || !contains(m.Options, "ro") {
		t.Errorf("default hide of ~/.ssh: %+v", m)
	}
	if m := mountAt(s, filepath.Join(h.Home, ".netrc")); m.Type != "bind" || m.Source != filepath.Join(h.Home, ".netrc") {
		t.Errorf("--ro of a file wins over its default hide: %+v", m)
	}
	if s.Process.Cwd != proj || s.Process.Args[0] != ReaperPath || s.Linux.Seccomp == nil {
		t.Errorf("process: %+v", s.Process)
	}
	if len(p.Unhidden) != 0 {
		t.Errorf("unhidden without --no-default-hides: %v", p.Unhidden)
	}
	o.NoDefaultHides = true
	if p, err = Generate(o, h); err != nil || len(p.Unhidden) != 1 || p.Unhidden[0] != filepath.Join(h.Home, ".ssh") {
		t.Errorf("--no-default-hides: %v %v (the .netrc is --ro, proj below nothing)", p.Unhidden, err)
	}
}

func TestGenerateBadInput(t *testing.T) {
	h, dir := testHost(t)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{RW: []string{filepath.Join(dir, "nope")}}, "no such file or directory"},
		{Options{RW: []string{dir}, Hide: []string{dir}}, "given to both --rw and --hide"},
		{Options{RO: []string{"/proc/self"}}, "own /proc"},
		{Options{Network: "bridge"}, `--network "bridge"`},
		{Options{Egress: []string{"allow=1.2.3.4"}}, "need --network=sandbox"},
		{Options{Memory: "lots"}, "--memory"},
		{Options{CPUs: "-1"}, "--cpus"},
		{Options{Timeout: "0s"}, "--timeout"},
		{Options{Format: "yaml", Changes: true}, "--format"},
		{Options{Format: "json"}, "--format is the format of --changes"},
		{Options{Seccomp: filepath.Join(dir, "none.json")}, "--seccomp"},
	} {
		c.o.Args, c.o.Cwd, c.o.Exe = []string{"true"}, dir, "/moat"
		_, err := Generate(&c.o, h)
		if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an input error about %q", c.o, err, c.want)
		}
	}
}

func TestGenerateIdentityNetworkLimits(t *testing.T) {
	h, dir := testHost(t)
	h.UID, h.GID = 1000, 1000
	o := &Options{Args: []string{"true"}, Cwd: dir, Exe: "/moat", Network: NetHost, Memory: "1g", CPUs: "1.5", Pids: 10, Changes: true}
	p, err := Generate(o, h)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec
	if s.Process.User.UID != 0 || len(s.Linux.UIDMappings) != 1 || s.Linux.UIDMappings[0].HostID != 1000 {
		t.Errorf("rootless identity: %+v %+v", s.Process.User, s.Linux.UIDMappings)
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace || ns.Type == specs.UTSNamespace {
			t.Errorf("--network=host keeps a %s namespace", ns.Type)
		}
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 1<<30 || *r.CPU.Quota != 150000 || *r.Pids.Limit != 10+reaperTasks {
		t.Errorf("limits: %+v %+v %+v", *r.Memory.Limit, *r.CPU.Quota, *r.Pids.Limit)
	}
	if s.Annotations["moat.upper"] != upperPath || !contains(s.Process.Args, "--changes-fd=3") {
		t.Errorf("--changes: annotations %v, args %v", s.Annotations, s.Process.Args)
	}
	// The command runs as the caller's ids in a nested namespace; its
	// profile goes to the reaper (fd 4, after the change list).
	if !contains(s.Process.Args, "--uid=1000") || !contains(s.Process.Args, "--seccomp-fd=4") || s.Linux.Seccomp != nil || len(p.profile) == 0 {
		t.Errorf("nested identity: args %v, spec seccomp %v, profile %d bytes", s.Process.Args, s.Linux.Seccomp != nil, len(p.profile))
	}
	o.Root = true
	if p, err = Generate(o, h); err != nil || contains(p.Spec.Process.Args, "--uid=1000") || p.Spec.Linux.Seccomp == nil || p.profile != nil {
		t.Errorf("--root: %v %v", p.Spec.Process.Args, err)
	}
}

func TestDiskSubmounts(t *testing.T) {
	dir := hostDir(t)
	sp := filepath.Join(dir, "with space")
	if err := os.Mkdir(sp, 0o755); err != nil {
		t.Fatal(err)
	}
	esc := strings.ReplaceAll(sp, " ", `\040`)
	info := strings.Join([]string{
		"1 0 8:1 / / rw - ext4 /dev/sda1 rw",
		"2 1 0:5 / /proc rw - proc proc rw",
		"3 1 8:2 / " + esc + " rw shared:1 - xfs /dev/sda2 rw",
		"4 1 0:6 / " + dir + " rw - tmpfs tmpfs rw",
		"5 1 8:3 / /missing/dir rw - ext4 /dev/sda3 rw",
		"6 1 8:4 / /run/media rw - ext4 /dev/sda4 rw",
	}, "\n") + "\n"
	mi := filepath.Join(dir, "mountinfo")
	if err := os.WriteFile(mi, []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	got := diskSubmounts(mi)
	if len(got) != 1 || got[0] != sp {
		t.Errorf("disk submounts: %q, want [%q]", got, sp)
	}
}

func TestProfileTOML(t *testing.T) {
	dir := hostDir(t)
	p := filepath.Join(dir, "p.toml")
	text := `# a profile
rw = [".", "/var/tmp",   # trailing comment
  ]
network = "sandbox"
egress-domain = ['allow=pypi.org']
pids = 1_000
"no-default-hides" = true
timeout = "5m"  # quoted
`
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := LoadProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.RW) != 2 || o.RW[1] != "/var/tmp" || o.Network != "sandbox" || o.EgressDomain[0] != "allow=pypi.org" ||
		o.Pids != 1000 || !o.NoDefaultHides || o.Timeout != "5m" {
		t.Errorf("TOML profile: %+v", o)
	}
	for bad, want := range map[string]string{
		"[table]\n":           "tables are not supported",
		"rww = 1\n":           `unknown field "rww"`,
		"network = sandbox\n": "strings need quotes",
		"rw = [\"a\"\n":       "array",
		"pids = 1\npids = 2":  "given twice",
	} {
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadProfile(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error about %q", bad, err, want)
		}
	}
}

// Names the sandbox chose reach the terminal quoted when they hold control
// characters.
func TestPrintChangesQuotes(t *testing.T) {
	var b strings.Builder
	err := PrintChanges(&b, []Change{{Path: "/x/esc\x1b]0;title\x07", Kind: "created", Type: "symlink", Target: "a\nb"}}, "text")
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("control characters reached the output: %q", b.String())
	}
}
