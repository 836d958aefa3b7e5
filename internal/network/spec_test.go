package network

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func netSpec(withNS bool, path string) *specs.Spec {
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}
	if withNS {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
	}
	return s
}

func netNS(s *specs.Spec) (found bool, path string) {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return true, ns.Path
		}
	}
	return false, ""
}

func TestApplyMode(t *testing.T) {
	for _, tc := range []struct {
		mode          string
		withNS        bool
		path          string
		wantNS        bool
		wantSandbox   bool
		wantErrSubstr string
	}{
		{ModeAuto, true, "", true, false, ""},
		{ModeAuto, false, "", false, false, ""},
		{ModeNone, false, "", true, false, ""},
		{ModeNone, true, "", true, false, ""},
		{ModeHost, true, "", false, false, ""},
		{ModeHost, false, "", false, false, ""},
		{ModeSandbox, false, "", true, true, ""},
		{ModeSandbox, true, "", true, true, ""},
		// Joined by path: kept, whatever the mode.
		{ModeSandbox, true, "/run/netns/x", true, false, ""},
		{ModeHost, true, "/run/netns/x", true, false, ""},
		{"bridge", true, "", true, false, "want auto, none, host or sandbox"},
	} {
		s := netSpec(tc.withNS, tc.path)
		sb, err := ApplyMode(s, tc.mode)
		if tc.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
				t.Errorf("%s: error %v, want %q", tc.mode, err, tc.wantErrSubstr)
			}
			continue
		}
		found, path := netNS(s)
		if err != nil || sb != tc.wantSandbox || found != tc.wantNS || path != tc.path {
			t.Errorf("mode %s (ns %v %q): sandbox %v ns %v %q err %v", tc.mode, tc.withNS, tc.path, sb, found, path, err)
		}
		if n := len(s.Linux.Namespaces); found && n != 2 || !found && n != 1 {
			t.Errorf("mode %s: namespaces %v", tc.mode, s.Linux.Namespaces)
		}
	}
	s := netSpec(true, "")
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
	if _, err := ApplyMode(s, ModeHost); err == nil {
		t.Error("host mode with a net.* sysctl: expected an error")
	}
}

func TestAddEtcMounts(t *testing.T) {
	dir := t.TempDir()
	s := netSpec(true, "")
	s.Hostname = "box"
	s.Mounts = []specs.Mount{{Destination: "/etc//hosts/", Type: "bind", Source: "/x"}}
	host := []byte("nameserver 192.0.2.53\nsearch corp.example\noptions ndots:2\n")
	if err := AddEtcMounts(s, dir, host, Config{}); err != nil {
		t.Fatal(err)
	}
	var dsts []string
	for _, m := range s.Mounts[1:] {
		dsts = append(dsts, m.Destination)
		if !slices.Contains(m.Options, "ro") || filepath.Dir(m.Source) != dir {
			t.Errorf("mount %+v: want a read-only bind from %s", m, dir)
		}
	}
	if !slices.Equal(dsts, []string{"/etc/resolv.conf", "/etc/hostname"}) {
		t.Errorf("added mounts %v; the spec's /etc/hosts must win", dsts)
	}
	rc, err := os.ReadFile(filepath.Join(dir, "etc-resolv.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rc); !strings.Contains(got, "nameserver 10.0.2.2\n") || strings.Contains(got, "192.0.2.53") ||
		!strings.Contains(got, "search corp.example\n") || !strings.Contains(got, "options ndots:2\n") {
		t.Errorf("resolv.conf:\n%s", got)
	}
	if hn, _ := os.ReadFile(filepath.Join(dir, "etc-hostname")); string(hn) != "box\n" {
		t.Errorf("hostname file %q", hn)
	}
}
