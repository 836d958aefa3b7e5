package container

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/spec"
)

// The CLI decides, from one look at each bind source, what the gofer
// serves (host directories of ordinary file systems, with their parsed
// options) and which mount points are files; the gofer's part holds all
// it needs, so that it never decodes the spec.
func TestGoferPlan(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"rootfs", "data", "cache"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{
		Version: "1.0.2",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/work"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
			{Destination: "/etc/hosts", Type: "bind", Source: "hosts", Options: []string{"bind"}},
			{Destination: "/host/proc", Type: "bind", Source: "/proc", Options: []string{"rbind"}},
			{Destination: "/cache", Type: "bind", Source: filepath.Join(dir, "cache"), Options: []string{"rbind", spec.OptionalMount}},
			{Destination: "/opt", Type: "bind", Source: "gone", Options: []string{"rbind", spec.OptionalMount}},
		},
	}
	b, err := spec.FromSpec(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := goferPlan(b, &config.Config{Overlay: config.OverlayMemory})
	if err != nil {
		t.Fatal(err)
	}
	want := &ipc.BootGoferConfig{
		Rootfs: filepath.Join(dir, "rootfs"), Overlay: config.OverlayMemory, Cwd: "/work",
		Binds: []ipc.GoferBind{
			{SpecIndex: 1, Source: filepath.Join(dir, "data"), Destination: "/data", ReadOnly: true},
			{SpecIndex: 4, Source: filepath.Join(dir, "cache"), Destination: "/cache", Optional: true},
		},
		MountPoints: []ipc.MountPoint{
			{Destination: "/proc"}, {Destination: "/data"}, {Destination: "/etc/hosts", File: true},
			{Destination: "/host/proc"}, {Destination: "/cache"}, {Destination: "/opt"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("gofer's part:\n got %+v\nwant %+v", got, want)
	}
	p := &ipc.Plan{Spec: b.Spec, Rootfs: b.Rootfs, Gofer: got}
	if err := p.Check(); err != nil {
		t.Errorf("the plan made is refused: %v", err)
	}
}

// The memory overlay's size is worked out in the CLI, once: boot neither
// parses --overlay-size nor reads the host's memory.
func TestOverlaySize(t *testing.T) {
	limit := int64(96 << 20)
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	for _, tc := range []struct {
		flag string
		res  *specs.LinuxResources
		want int64
	}{
		{"64m", res, 64 << 20},
		{"", res, limit},
		{"", nil, memTotal() / 2},
	} {
		got, err := overlaySize(&config.Config{OverlaySize: tc.flag}, tc.res)
		if err != nil || got != tc.want {
			t.Errorf("overlaySize(%q, %v) = %d, %v; want %d", tc.flag, tc.res, got, err, tc.want)
		}
	}
	if memTotal() <= 0 {
		t.Error("memTotal found no host memory")
	}
	// It is /proc/meminfo's MemTotal, read with one sysinfo call.
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err != nil {
		t.Fatalf("/proc/meminfo: %v", err)
	}
	if memTotal() != kb*1024 {
		t.Errorf("memTotal() = %d, /proc/meminfo MemTotal = %d", memTotal(), kb*1024)
	}
}
