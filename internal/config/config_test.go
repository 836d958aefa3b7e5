package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	c := Default()
	c.Root = "/tmp/x"
	c.Debug = true
	c.LogFormat = "json"
	c.Rootless = "false"
	c.Network = NetworkSandbox
	c.Publish = List{"8080:80", "127.0.0.1:5353:53/udp"}
	c.Egress = List{"allow=10.0.0.0/8:443", "deny=192.0.2.1"}
	c.AllowHostLoopback = true
	c.SeccompDefault = true
	got, err := NewFromFlags(c.ToFlags())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, c) {
		t.Fatalf("round trip: got %+v want %+v (flags %q)", *got, c, c.ToFlags())
	}
	d := Default()
	if f := d.ToFlags(); len(f) != 0 {
		t.Fatalf("defaults render flags: %q", f)
	}
}

func TestValidate(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format=xml"},
		{"--rootless=maybe"},
		{"--file-access=magic"},
		{"--nope"},
		{"--network=bridge"},
		{"--network=sandbox", "--publish=80"},
		{"--network=sandbox", "--publish=8080:80", "--publish=8080:81"},
		{"--network=sandbox", "--egress=permit=10.0.0.0/8"},
		{"--network=sandbox", "--egress-domain=exa mple.org"},
		{"--network=sandbox", "--dns=resolver"},
	} {
		if _, err := NewFromFlags(args); err == nil {
			t.Errorf("%q: expected an error", args)
		}
	}
}

func TestNetworkAnnotations(t *testing.T) {
	c := Default()
	got, err := c.WithAnnotations(map[string]string{"moat.network": "sandbox", "moat.publish": "127.0.0.1:8080:80, [::1]:9090:90/udp"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Network != NetworkSandbox || !reflect.DeepEqual(got.Publish, List{"127.0.0.1:8080:80", "[::1]:9090:90/udp"}) {
		t.Fatalf("got network %q publish %q", got.Network, got.Publish)
	}
	if len(c.Publish) != 0 {
		t.Fatalf("WithAnnotations changed its receiver: %q", c.Publish)
	}
	// Sandbox-only settings on another network are refused, not ignored.
	c.Publish = List{"8080:80"}
	if _, err := c.WithAnnotations(nil); err == nil {
		t.Fatal("--publish without the sandbox network: expected an error")
	}
	if _, err := c.WithAnnotations(map[string]string{"moat.network": "sandbox"}); err != nil {
		t.Fatalf("--publish with the sandbox network from an annotation: %v", err)
	}
	// A bundle publishes on loopback only: all interfaces or another
	// address is the operator's choice.
	for _, p := range []string{"8080:80", "0.0.0.0:8080:80", "192.0.2.1:8080:80", "[::]:8080:80/udp"} {
		_, err := c.WithAnnotations(map[string]string{"moat.network": "sandbox", "moat.publish": p})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("moat.publish=%s: %v, want a loopback-only error", p, err)
		}
	}
	if _, err := c.WithAnnotations(map[string]string{"moat.network": "sandbox", "moat.publish": "80"}); err == nil {
		t.Error("moat.publish=80: expected a parse error")
	}
	// Nor any network less closed than the operator's: auto would let the
	// spec leave out its network namespace and share the host's.
	for _, c := range []struct{ operator, annotation string }{
		{NetworkNone, NetworkSandbox}, {NetworkNone, NetworkAuto}, {NetworkNone, NetworkHost},
		{NetworkSandbox, NetworkAuto}, {NetworkSandbox, NetworkHost}, {NetworkAuto, NetworkHost},
	} {
		op := Default()
		op.Network = c.operator
		if _, err := op.WithAnnotations(map[string]string{"moat.network": c.annotation}); err == nil || !strings.Contains(err.Error(), "less isolated") {
			t.Errorf("--network=%s with moat.network=%s: %v, want refused", c.operator, c.annotation, err)
		}
	}
	for _, c := range []struct{ operator, annotation string }{
		{NetworkHost, NetworkAuto}, {NetworkHost, NetworkNone}, {NetworkAuto, NetworkSandbox}, {NetworkSandbox, NetworkNone}, {NetworkNone, NetworkNone},
	} {
		op := Default()
		op.Network = c.operator
		if got, err := op.WithAnnotations(map[string]string{"moat.network": c.annotation}); err != nil || got.Network != c.annotation {
			t.Errorf("--network=%s with moat.network=%s: %v, want allowed", c.operator, c.annotation, err)
		}
	}
	// Nor may a bundle take the host's network.
	if _, err := Default().WithAnnotations(map[string]string{"moat.network": "host"}); err == nil {
		t.Fatal("moat.network=host annotation: expected an error")
	}
	// The egress policy is not the bundle's to choose.
	if got, err := Default().WithAnnotations(map[string]string{"moat.egress": "allow=0.0.0.0/0"}); err != nil || len(got.Egress) != 0 {
		t.Fatalf("moat.egress annotation: got %q, %v", got.Egress, err)
	}
}

// A bundle may choose its overlay and tighten file access, never take
// direct access to host files against the operator's choice.
func TestFileAccessAnnotations(t *testing.T) {
	if _, err := Default().WithAnnotations(map[string]string{"moat.file-access": FileAccessDirect}); err == nil ||
		!strings.Contains(err.Error(), "--file-access=direct") {
		t.Fatalf("moat.file-access=direct annotation under the gofer: %v, want an error naming the flag", err)
	}
	direct := Default()
	direct.FileAccess = FileAccessDirect
	got, err := direct.WithAnnotations(map[string]string{"moat.file-access": FileAccessGofer, "moat.overlay": OverlayNone})
	if err != nil || got.FileAccess != FileAccessGofer || got.Overlay != OverlayNone {
		t.Fatalf("tightening to the gofer: %+v, %v", got, err)
	}
	if got, err := direct.WithAnnotations(map[string]string{"moat.file-access": FileAccessDirect}); err != nil || got.FileAccess != FileAccessDirect {
		t.Fatalf("direct under an operator's direct: %v", err)
	}
}

func TestSharedGoferIdle(t *testing.T) {
	c := Default()
	if d, err := c.SharedIdle(); err != nil || d != 60*time.Second {
		t.Fatalf("default idle %v %v, want 60s", d, err)
	}
	for v, ok := range map[string]bool{"2s": true, "10m": true, "0s": false, "-1s": false, "soon": false, "48h": false} {
		c.SharedGoferIdle = v
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("--shared-gofer-idle=%s: Validate() = %v, want ok=%v", v, err, ok)
		}
	}
}
