package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// minimal is the smallest spec moat accepts.
func minimal() *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}},
	}
}

// bundle makes a bundle directory with a rootfs and the given config.json.
func bundle(t *testing.T, config []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFilename), config, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func encode(t *testing.T, s *specs.Spec) []byte {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLoadMinimal(t *testing.T) {
	dir := bundle(t, encode(t, minimal()))
	b, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if b.Dir != dir {
		t.Errorf("Dir = %q, want %q", b.Dir, dir)
	}
	if want := filepath.Join(dir, "rootfs"); b.Rootfs != want {
		t.Errorf("Rootfs = %q, want %q", b.Rootfs, want)
	}
	if b.Spec.Process.Args[0] != "sh" {
		t.Errorf("spec not decoded: %+v", b.Spec.Process)
	}
	if len(b.Warnings) != 0 {
		t.Errorf("warnings for a minimal spec: %v", b.Warnings)
	}
}

// Bind sources are resolved against the bundle once, at load: the plan's
// spec names absolute sources, which no later process resolves again.
// What a source is (StatBindSource) is looked at once, by the CLI.
func TestLoadMakesBindSourcesAbsolute(t *testing.T) {
	s := minimal()
	s.Mounts = []specs.Mount{
		{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind"}},
		{Destination: "/abs", Type: "bind", Source: "/proc", Options: []string{"rbind"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/f", Type: "bind", Source: "./f", Options: []string{"bind"}},
	}
	dir := bundle(t, encode(t, s))
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "data"), "/proc", "tmpfs", filepath.Join(dir, "f")}
	for i, m := range b.Spec.Mounts {
		if m.Source != want[i] {
			t.Errorf("mounts[%d].source = %q, want %q", i, m.Source, want[i])
		}
	}
	for _, tc := range []struct {
		src  string
		want BindSource
	}{
		{filepath.Join(dir, "data"), BindSource{Dir: true, Served: true}},
		{"/proc", BindSource{Dir: true}}, // a kernel file system: init binds it
		{filepath.Join(dir, "f"), BindSource{NonDir: true}},
		{filepath.Join(dir, "gone"), BindSource{}},
	} {
		if got := StatBindSource(tc.src); got != tc.want {
			t.Errorf("StatBindSource(%s) = %+v, want %+v", tc.src, got, tc.want)
		}
	}
}

func TestLoadRelativeBundleAndAbsoluteRoot(t *testing.T) {
	parent := t.TempDir()
	rootfs := filepath.Join(parent, "elsewhere", "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	s := minimal()
	s.Root.Path = rootfs + "/./"
	if err := os.MkdirAll(filepath.Join(parent, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "b", ConfigFilename), encode(t, s), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(parent)
	b, err := Load("b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != filepath.Join(parent, "b") {
		t.Errorf("Dir = %q: a relative bundle path must become absolute", b.Dir)
	}
	if b.Rootfs != rootfs {
		t.Errorf("Rootfs = %q, want the cleaned %q", b.Rootfs, rootfs)
	}
}

func TestLoadBundleProblems(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing bundle: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("bundle is a file: %v", err)
	}
	_, err := Load(t.TempDir())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("no config.json: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		want       []string
	}{
		{"malformed JSON", "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\"},,\n}", []string{"malformed JSON", "line 3"}},
		{"truncated", "{\"ociVersion\": \"1.0.2\"", []string{"config.json"}},
		{"wrong type top", `{"ociVersion": 1}`, []string{`"ociVersion"`, "number", "string"}},
		{"wrong type nested", `{"ociVersion": "1.0.2", "process": {"args": "sh"}}`, []string{"process.args", "string"}},
		{"trailing object", `{"ociVersion": "1.0.2"} {}`, []string{"trailing data"}},
		{"trailing garbage", `{"ociVersion": "1.0.2"} xyz`, []string{"trailing data"}},
		// A stray closing brace after the object (a common editing slip) is
		// trailing data too.
		{"trailing brace", `{"ociVersion": "1.0.2"}}`, []string{"trailing data"}},
		{"trailing bracket", `{"ociVersion": "1.0.2"}]`, []string{"trailing data"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(strings.NewReader(tc.json))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	// Unknown fields are extensions and allowed; whitespace after is fine.
	if _, err := Decode(strings.NewReader(`{"ociVersion": "1.0.2", "x-vendor": {"a": 1}}` + "\n\n ")); err != nil {
		t.Errorf("unknown field / trailing whitespace: %v", err)
	}
}

func TestLoadDecodeErrorIsInvalid(t *testing.T) {
	dir := bundle(t, []byte("{\n\n  nope\n}"))
	_, err := Load(dir)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("Load = %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestValidateInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(s *specs.Spec, dir string)
		want   []string
	}{
		{"missing ociVersion", func(s *specs.Spec, _ string) { s.Version = "" }, []string{"ociVersion", "missing"}},
		{"ociVersion 2.x", func(s *specs.Spec, _ string) { s.Version = "2.0.0" }, []string{"ociVersion", "2.0.0"}},
		{"missing root", func(s *specs.Spec, _ string) { s.Root = nil }, []string{"root.path"}},
		{"empty root path", func(s *specs.Spec, _ string) { s.Root.Path = "" }, []string{"root.path"}},
		{"missing rootfs dir", func(s *specs.Spec, _ string) { s.Root.Path = "nope" }, []string{"root.path", "does not exist"}},
		{"rootfs is a file", func(s *specs.Spec, dir string) {
			os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
			s.Root.Path = "file"
		}, []string{"root.path", "not a directory"}},
		{"missing process", func(s *specs.Spec, _ string) { s.Process = nil }, []string{"process", "missing"}},
		{"empty args", func(s *specs.Spec, _ string) { s.Process.Args = nil }, []string{"process.args"}},
		{"empty program", func(s *specs.Spec, _ string) { s.Process.Args = []string{""} }, []string{"process.args[0]"}},
		{"commandLine", func(s *specs.Spec, _ string) { s.Process.CommandLine = "sh" }, []string{"process.commandLine"}},
		{"missing cwd", func(s *specs.Spec, _ string) { s.Process.Cwd = "" }, []string{"process.cwd", "missing"}},
		{"relative cwd", func(s *specs.Spec, _ string) { s.Process.Cwd = "home" }, []string{"process.cwd", `"home"`}},
		{"env without =", func(s *specs.Spec, _ string) { s.Process.Env = []string{"A=1", "JUNK"} }, []string{"process.env[1]", "JUNK"}},
		{"env with empty name", func(s *specs.Spec, _ string) { s.Process.Env = []string{"=x"} }, []string{"process.env[0]"}},
		{"unknown capability", func(s *specs.Spec, _ string) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_FLY"}}
		}, []string{"process.capabilities.bounding", "CAP_FLY"}},
		{"unknown ambient capability", func(s *specs.Spec, _ string) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Ambient: []string{"kill"}}
		}, []string{"process.capabilities.ambient"}},
		{"unknown rlimit", func(s *specs.Spec, _ string) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_WHATEVER", Soft: 1, Hard: 1}}
		}, []string{"process.rlimits[0]", "RLIMIT_WHATEVER"}},
		{"duplicate rlimit", func(s *specs.Spec, _ string) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: 1}, {Type: "RLIMIT_NOFILE", Soft: 2, Hard: 2}}
		}, []string{"process.rlimits[1]", "twice"}},
		{"soft above hard", func(s *specs.Spec, _ string) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 10, Hard: 5}}
		}, []string{"process.rlimits[0]", "soft limit 10", "hard limit 5"}},
		{"oomScoreAdj too high", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(1001) }, []string{"process.oomScoreAdj", "1001"}},
		{"oomScoreAdj too low", func(s *specs.Spec, _ string) { s.Process.OOMScoreAdj = ptr(-1001) }, []string{"process.oomScoreAdj"}},
		{"missing linux", func(s *specs.Spec, _ string) { s.Linux = nil }, []string{"linux", "missing"}},
		{"unknown namespace", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, []string{"linux.namespaces[1].type", "bogus"}},
		{"duplicate namespace", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace}, specs.LinuxNamespace{Type: specs.PIDNamespace})
		}, []string{"linux.namespaces[2].type", "twice"}},
		{"user namespace by path", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/1/ns/user"})
		}, []string{"linux.namespaces[1].path", "user namespace"}},
		{"relative namespace path", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "proc/1/ns/net"})
		}, []string{"linux.namespaces[1].path", "not an absolute path"}},
		{"missing namespace path", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/1/ns/nonesuch"})
		}, []string{"linux.namespaces[1].path"}},
		{"no mount namespace", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.PIDNamespace}}
		}, []string{"linux.namespaces", "mount namespace"}},
		{"uid mappings without user ns", func(s *specs.Spec, _ string) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
		}, []string{"linux.uidMappings", "user namespace"}},
		{"user ns without mappings", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		}, []string{"linux.uidMappings"}},
		{"hostname without uts ns", func(s *specs.Spec, _ string) { s.Hostname = "box" }, []string{"hostname", "uts"}},
		{"domainname without uts ns", func(s *specs.Spec, _ string) { s.Domainname = "example" }, []string{"domainname", "uts"}},
		{"time offsets without time ns", func(s *specs.Spec, _ string) {
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}}
		}, []string{"linux.timeOffsets"}},
		{"relative mount destination", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "proc", Type: "proc", Source: "proc"}}
		}, []string{"mounts[0].destination", `"proc"`}},
		{"missing mount destination", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Type: "tmpfs", Source: "tmpfs"}}
		}, []string{"mounts[0].destination", "missing"}},
		{"bind without source", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}, {Destination: "/data", Type: "bind"}}
		}, []string{"mounts[1].source", "needs a source"}},
		{"missing bind source", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "/data", Type: "none", Source: "/nonexistent/moat-test", Options: []string{"rbind"}}}
		}, []string{"mounts[0].source", "no such file"}},
		{"missing relative bind source", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "/data", Type: "bind", Source: "data"}}
		}, []string{"mounts[0].source", "data"}},
		{"unknown mount type", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "nosuchfs", Source: "x"}}
		}, []string{"mounts[0].type", "nosuchfs"}},
		{"missing mount type", func(s *specs.Spec, _ string) {
			s.Mounts = []specs.Mount{{Destination: "/x", Source: "x"}}
		}, []string{"mounts[0].type"}},
		{"idmap option", func(s *specs.Spec, dir string) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "bind", Source: dir, Options: []string{"rbind", "idmap"}}}
		}, []string{"mounts[0].options", "idmap"}},
		{"non-namespaced sysctl", func(s *specs.Spec, _ string) {
			s.Linux.Sysctl = map[string]string{"vm.swappiness": "10"}
		}, []string{"linux.sysctl.vm.swappiness", "namespaced"}},
		{"net sysctl without netns", func(s *specs.Spec, _ string) {
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
		}, []string{"linux.sysctl.net.ipv4.ip_forward", "network namespace"}},
		{"ipc sysctl without ipc ns", func(s *specs.Spec, _ string) {
			s.Linux.Sysctl = map[string]string{"kernel.shmmax": "1"}
		}, []string{"linux.sysctl.kernel.shmmax", "ipc"}},
		{"sysctl path form", func(s *specs.Spec, _ string) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
			s.Linux.Sysctl = map[string]string{"net/ipv4/ip_forward": "1"}
		}, []string{"linux.sysctl.net/ipv4/ip_forward", "malformed"}},
		{"device outside /dev", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/tmp/null", Type: "c", Major: 1, Minor: 3}}
		}, []string{"linux.devices[0].path", "/tmp/null"}},
		{"device escaping /dev", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/../etc/shadow", Type: "c", Major: 1, Minor: 3}}
		}, []string{"linux.devices[0].path"}},
		{"relative device", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "dev/null", Type: "c", Major: 1, Minor: 3}}
		}, []string{"linux.devices[0].path"}},
		{"unknown device type", func(s *specs.Spec, _ string) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}}
		}, []string{"linux.devices[0].type", `"z"`}},
		{"unknown rootfsPropagation", func(s *specs.Spec, _ string) { s.Linux.RootfsPropagation = "sideways" }, []string{"linux.rootfsPropagation", "sideways"}},
		{"relative masked path", func(s *specs.Spec, _ string) { s.Linux.MaskedPaths = []string{"/proc/kcore", "proc/keys"} }, []string{"linux.maskedPaths", "proc/keys"}},
		{"relative readonly path", func(s *specs.Spec, _ string) { s.Linux.ReadonlyPaths = []string{"sys"} }, []string{"readonlyPaths", `"sys"`}},
		{"unknown personality", func(s *specs.Spec, _ string) {
			s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX64"}
		}, []string{"linux.personality.domain", "LINUX64"}},
		{"intelRdt", func(s *specs.Spec, _ string) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} }, []string{"linux.intelRdt"}},
		{"relative hook path", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}, {Path: "hook.sh"}}}
		}, []string{"hooks.createRuntime[1].path", "hook.sh"}},
		{"zero hook timeout", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: ptr(0)}}}
		}, []string{"hooks.poststop[0].timeout", "positive"}},
		{"negative hook timeout", func(s *specs.Spec, _ string) {
			s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/true", Timeout: ptr(-5)}}}
		}, []string{"hooks.startContainer[0].timeout", "-5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := minimal()
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
				t.Fatal(err)
			}
			tc.mutate(s, dir)
			if err := os.WriteFile(filepath.Join(dir, ConfigFilename), encode(t, s), 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted the config (rootfs %s)", b.Rootfs)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q is not ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateAcceptsFullerSpec(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	os.Mkdir(filepath.Join(dir, "data"), 0o755)
	s := minimal()
	s.Hostname = "box"
	s.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
		{Type: specs.UserNamespace}, {Type: specs.TimeNamespace},
	}
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
	s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: 10}}
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10", "kernel.hostname": "x"}
	s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}, {Path: "/dev/sub/p", Type: "p"}}
	s.Linux.RootfsPropagation = "rslave"
	s.Linux.MaskedPaths = []string{"/proc/kcore"}
	s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32}
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_ADMIN"}, Ambient: []string{"CAP_CHECKPOINT_RESTORE"}}
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 10}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 1}}
	s.Process.OOMScoreAdj = ptr(-1000)
	s.Process.Env = []string{"EMPTY=", "A=b=c"}
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=1777", "x-mount.mkdir"}},
		{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro", "rprivate"}},
		{Destination: "/etc/hosts", Type: "none", Source: "/etc/hosts", Options: []string{"bind"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup2", Source: "cgroup"},
	}
	s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/true", Timeout: ptr(1)}}}
	os.WriteFile(filepath.Join(dir, ConfigFilename), encode(t, s), 0o644)
	if _, err := Load(dir); err != nil {
		t.Fatalf("Load: %v", err)
	}
}

func TestSecurityLabelWarnings(t *testing.T) {
	s := minimal()
	s.Process.ApparmorProfile = "docker-default"
	s.Process.SelinuxLabel = "system_u:system_r:container_t:s0"
	s.Linux.MountLabel = "system_u:object_r:container_file_t:s0"
	b, err := Load(bundle(t, encode(t, s)))
	if err != nil {
		t.Fatalf("labels must be warnings, not errors: %v", err)
	}
	joined := strings.Join(b.Warnings, "\n")
	if !AppArmorEnabled() {
		if !strings.Contains(joined, "process.apparmorProfile") || !strings.Contains(joined, "docker-default") {
			t.Errorf("no apparmor warning in %q", joined)
		}
	}
	if !SELinuxEnabled() {
		if !strings.Contains(joined, "process.selinuxLabel") {
			t.Errorf("no selinuxLabel warning in %q", joined)
		}
	}
	if !strings.Contains(joined, "linux.mountLabel") {
		t.Errorf("no mountLabel warning in %q", joined)
	}
	for _, w := range b.Warnings {
		if strings.Contains(w, "\n") {
			t.Errorf("warning spans lines: %q", w)
		}
	}
}

func TestHelpers(t *testing.T) {
	s := minimal()
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"})
	if !HasNamespace(s, specs.MountNamespace) || !HasNamespace(s, specs.NetworkNamespace) || HasNamespace(s, specs.PIDNamespace) {
		t.Error("HasNamespace")
	}
	if !NewNamespace(s, specs.MountNamespace) || NewNamespace(s, specs.NetworkNamespace) || NewNamespace(s, specs.PIDNamespace) {
		t.Error("NewNamespace")
	}
	if HasNamespace(&specs.Spec{}, specs.MountNamespace) || NewNamespace(&specs.Spec{}, specs.MountNamespace) {
		t.Error("namespace helpers on a spec without linux")
	}
	for m, want := range map[*specs.Mount]bool{
		{Type: "bind"}: true,
		{Type: "none", Options: []string{"rbind"}}:   true,
		{Type: "tmpfs", Options: []string{"bind"}}:   true,
		{Type: "tmpfs", Options: []string{"nosuid"}}: false,
		{Type: "proc"}: false,
		{Type: "none", Options: []string{"rbindish"}}: false,
	} {
		if got := IsBind(*m); got != want {
			t.Errorf("IsBind(%+v) = %v", *m, got)
		}
	}
}
