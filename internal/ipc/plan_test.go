package ipc

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func testPlan() *Plan {
	return &Plan{
		Spec: &specs.Spec{Version: "1.0.2", Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}, Linux: &specs.Linux{},
			Root:   &specs.Root{Path: "rootfs", Readonly: true},
			Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro"}}}},
		Rootfs: "/b/rootfs",
		Gofer: &BootGoferConfig{Rootfs: "/b/rootfs", RootReadonly: true, Overlay: "memory", Cwd: "/",
			Binds:       []GoferBind{{SpecIndex: 1, Source: "/srv/data", Destination: "/data", ReadOnly: true}},
			MountPoints: []MountPoint{{Destination: "/proc"}, {Destination: "/data"}}},
		Network:     &NetworkPlan{DNSServers: []string{"192.0.2.53:53"}},
		OverlaySize: 64 << 20,
	}
}

// The plan boot reads is the plan the CLI wrote, gofer's part and all.
func TestPlanRoundTrip(t *testing.T) {
	p := testPlan()
	f, err := PlanMemfd(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadPlan(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, p)
	}
	if s := got.Gofer.Served(); !reflect.DeepEqual(s, []int{1}) {
		t.Errorf("Served() = %v, want [1]", s)
	}
	if s := (*BootGoferConfig)(nil).Served(); s != nil {
		t.Errorf("Served() of no gofer = %v", s)
	}
}

// A plan whose parts disagree is refused before any child is started.
func TestReadPlanRefusesInconsistent(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(*Plan)
		want  string
	}{
		{"no spec", func(p *Plan) { p.Spec = nil }, "incomplete"},
		{"no rootfs", func(p *Plan) { p.Rootfs = "" }, "incomplete"},
		{"the gofer's rootfs differs", func(p *Plan) { p.Gofer.Rootfs = "/elsewhere" }, "rootfs"},
		{"a bind the spec lacks", func(p *Plan) { p.Gofer.Binds[0].SpecIndex = 5 }, "mounts[5]"},
	} {
		p := testPlan()
		tc.spoil(p)
		f, err := PlanMemfd(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ReadPlan(f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func TestIoIndex(t *testing.T) {
	served := []int{2, 5}
	for _, tc := range []struct{ spec, want int }{{-1, 0}, {2, 1}, {5, 2}, {3, -1}} {
		if got := IoIndex(served, tc.spec); got != tc.want {
			t.Errorf("IoIndex(%v, %d) = %d, want %d", served, tc.spec, got, tc.want)
		}
	}
}
