package rootless

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSubRanges(t *testing.T) {
	f := filepath.Join(t.TempDir(), "subuid")
	me := strconv.Itoa(os.Geteuid())
	data := "someone:100000:65536\n" + me + ":300000:1000\nbroken line\n" + me + ":x:1\n" + me + ":400000:0\n"
	if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	r := subRanges(f, os.Geteuid())
	if len(r) != 1 || r[0].start != 300000 || r[0].count != 1000 {
		t.Fatalf("ranges %+v, want the one valid range of this uid", r)
	}
	if got := subRanges(filepath.Join(t.TempDir(), "missing"), 0); got != nil {
		t.Fatalf("missing file: %+v", got)
	}
}

func TestWithin(t *testing.T) {
	ranges := []subRange{{100000, 65536}}
	for _, tc := range []struct {
		host, size uint32
		ok         bool
	}{{100000, 1, true}, {100000, 65536, true}, {165535, 1, true}, {165535, 2, false}, {99999, 2, false}, {0, 1, false}} {
		if got := within(specs.LinuxIDMapping{HostID: tc.host, Size: tc.size}, ranges); got != tc.ok {
			t.Errorf("host %d size %d: %v, want %v", tc.host, tc.size, got, tc.ok)
		}
	}
}

func TestDecideRoot(t *testing.T) {
	if os.Geteuid() != 0 || InUserNS() {
		t.Skip("SKIP (missing prerequisite: real root)")
	}
	m, err := Decide("auto", nil)
	if err != nil || m.Rootless || m.NewUserNS {
		t.Fatalf("root without a spec user namespace: %+v %v", m, err)
	}
	s := &specs.Spec{Linux: &specs.Linux{
		Namespaces:  []specs.LinuxNamespace{{Type: specs.UserNamespace}},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}},
	}}
	m, err = Decide("auto", s)
	if err != nil || !m.NewUserNS || m.Helper || m.UIDMap[0].HostID != 1000 {
		t.Fatalf("root with a spec user namespace: %+v %v", m, err)
	}
	if m, err := Decide("true", nil); err != nil || !m.Rootless {
		t.Fatalf("--rootless=true: %+v %v", m, err)
	}
}

func TestCheckAllowedRefusesForeignIDs(t *testing.T) {
	m := &Mode{NewUserNS: true,
		UIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}},
		GIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}}
	if os.Geteuid() == 0 {
		m.UIDMap[0].HostID = 4000000000 // nobody's
	}
	err := m.checkAllowed()
	if err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("a foreign uid mapping was accepted: %v", err)
	}
}

func TestOwnIDNeedsNoHelper(t *testing.T) {
	m := &Mode{NewUserNS: true,
		UIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}},
		GIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}}
	if err := m.checkAllowed(); err != nil || m.Helper {
		t.Fatalf("own ids: helper %v, %v", m.Helper, err)
	}
}

func TestDiagnoseReportsEveryCheck(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	checks := Diagnose(self)
	names := map[string]bool{}
	for _, c := range checks {
		names[c.Name] = true
		if !c.OK && c.Fix == "" && c.Required {
			t.Errorf("failing required check %q gives no fix", c.Name)
		}
	}
	for _, want := range []string{"user namespaces", "newuidmap", "/dev/fuse", "/dev/net/tun", "cgroup delegation", "seccomp", "pidfd"} {
		if !names[want] {
			t.Errorf("no %q check", want)
		}
	}
	if Summary([]Check{{Required: true}, {Required: false}, {Required: true, OK: true}}) != 1 {
		t.Error("Summary counts failed required checks")
	}
}

// TestMain lets the test binary stand in for moat in Diagnose's probes.
func TestMain(m *testing.M) {
	switch {
	case len(os.Args) > 1 && os.Args[1] == "--version":
		os.Exit(0)
	case len(os.Args) > 2 && os.Args[1] == "doctor" && os.Args[2] == "--probe-overlay":
		if err := ProbeOverlay(); err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
