package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sharedGofers lists the pids of `moat gofer --shared` serving rootfs.
func sharedGofers(rootfs string) []int {
	return pidsWhere(func(_ int, cl string) bool {
		return strings.Contains(cl, " gofer --shared ") && strings.Contains(cl, "--rootfs="+rootfs+" ")
	})
}

// sharedEnv is the environment of a shared gofer test: real root (the
// shared gofer is real root's only) with --shared-gofer and flags.
func sharedEnv(t *testing.T, flags ...string) *env {
	t.Helper()
	needGofer(t)
	needRoot(t, "the shared gofer is real root's only")
	e := newEnv(t)
	e.globals = append(append(e.globals, "--shared-gofer"), flags...)
	return e
}

// TestSharedGofer: with --shared-gofer, two containers of one image take
// their root from one shared gofer (no gofer of their own), confined like
// a container's; each writes only to its own memory layer (the other sees
// none of it, the image is never written); and once both have ended and
// the idle time has passed, the shared gofer is gone.
func TestSharedGofer(t *testing.T) {
	e := sharedEnv(t, "--shared-gofer-idle=2s")
	b := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) {
		s.Root.Readonly = false
		c := s.Process.Capabilities
		c.Bounding = append(c.Bounding, "CAP_DAC_OVERRIDE")
		c.Effective = append(c.Effective, "CAP_DAC_OVERRIDE")
		c.Permitted = append(c.Permitted, "CAP_DAC_OVERRIDE")
	})
	// A file of another owner that its mode lets no one read, in a
	// directory no one else may search: the shared gofer reads it for
	// the container's root (which may: CAP_DAC_OVERRIDE) with
	// CAP_DAC_OVERRIDE alone.
	secret := filepath.Join(b.rootfs(), "private")
	must(t, os.Mkdir(secret, 0o700))
	must(t, os.WriteFile(filepath.Join(secret, "f"), []byte("s3cret"), 0o000))
	must(t, os.Chown(filepath.Join(secret, "f"), 1234, 1234))
	must(t, os.Chown(secret, 1234, 1234))
	before := treeSum(t, b.rootfs())
	id1, id2 := e.id(), e.id()
	e.moat("run", "-d", "--bundle", b.dir, id1)
	e.moat("run", "-d", "--bundle", b.dir, id2)
	shared := sharedGofers(b.rootfs())
	if len(shared) != 1 {
		t.Fatalf("%d shared gofers for the image, want 1", len(shared))
	}
	if own := gofersOf(b.dir); len(own) != 0 {
		t.Errorf("containers with a shared root still started gofers of their own: %v", own)
	}
	checkGoferConfined(t, shared[0])
	if out := e.moat("exec", id2, "probe", "cat", "/private/f"); out != "s3cret" {
		t.Errorf("a file of the image's other owner reads %q through the shared root, want s3cret", out)
	}

	// Writes land in each container's own upper layer.
	e.moat("exec", id1, "probe", "write", "/etc/passwd", "one")
	e.moat("exec", id1, "probe", "write", "/bin/new", "one")
	e.moat("exec", id1, "probe", "rm", "/bin/true")
	if out := e.moat("exec", id2, "probe", "cat", "/etc/passwd"); !strings.HasPrefix(out, "root:x:0:0") {
		t.Errorf("the second container sees the first's /etc/passwd: %q", out)
	}
	for _, p := range []string{"/bin/new", "/bin/true"} {
		want := p == "/bin/true"
		r := e.run(nil, "exec", id2, "probe", "stat", p)
		if (r.code == 0) != want {
			t.Errorf("the second container: %s exists = %v, want %v (%s)", p, r.code == 0, want, r)
		}
	}
	if out := e.moat("exec", id1, "probe", "cat", "/etc/passwd"); out != "one" {
		t.Errorf("the first container reads back %q, want its own write", out)
	}
	// A container started later, with the first's changes still in memory,
	// sees the image as it is.
	id3 := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id3)
	if out := e.moat("exec", id3, "probe", "cat", "/etc/passwd"); !strings.HasPrefix(out, "root:x:0:0") {
		t.Errorf("a later container sees the first's /etc/passwd: %q", out)
	}
	if len(sharedGofers(b.rootfs())) != 1 {
		t.Errorf("the later container did not reuse the shared gofer")
	}
	e.moat("delete", "--force", id3)
	e.moat("delete", "--force", id1)
	e.moat("delete", "--force", id2)
	if after := treeSum(t, b.rootfs()); after != before {
		t.Errorf("the image changed under a shared root")
	}
	waitSharedGone(t, b.rootfs(), 30*time.Second)
}

// TestSharedGoferRestarts: a container started after the shared gofer has
// gone idle gets a new one; the image is served again, fresh.
func TestSharedGoferRestarts(t *testing.T) {
	e := sharedEnv(t, "--shared-gofer-idle=1s")
	b := e.newBundle([]string{"cat", "/etc/hostname"}, func(s *specsSpec) { s.Root.Readonly = false })
	must(t, os.WriteFile(filepath.Join(b.rootfs(), "etc/hostname"), []byte("v1"), 0o644))
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "v1" {
		t.Fatalf("read %q, want v1", out)
	}
	waitSharedGone(t, b.rootfs(), 30*time.Second)
	must(t, os.WriteFile(filepath.Join(b.rootfs(), "etc/hostname"), []byte("v2"), 0o644))
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "v2" {
		t.Fatalf("read %q after the shared gofer's restart, want v2", out)
	}
	waitSharedGone(t, b.rootfs(), 30*time.Second)
	// The next start of a shared gofer (another image) sweeps the sockets
	// of those that ended: only live ones are left.
	other := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) { s.Root.Readonly = false })
	id := e.id()
	e.moat("run", "-d", "--bundle", other.dir, id)
	if stale := staleSharedSockets(t); len(stale) > 0 {
		t.Errorf("sockets of ended shared gofers left: %v", stale)
	}
	e.moat("delete", "--force", id)
	waitSharedGone(t, other.rootfs(), 30*time.Second)
}

// staleSharedSockets lists the shared gofers' sockets that nothing listens
// on.
func staleSharedSockets(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/unix")
	must(t, err)
	live := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 8 && f[3] == "00010000" {
			live[f[7]] = true
		}
	}
	socks, _ := filepath.Glob("/run/moat-shared-gofer/*.sock")
	var stale []string
	for _, s := range socks {
		if !live[s] {
			stale = append(stale, s)
		}
	}
	return stale
}

// TestSharedGoferBindPerContainer: under a shared root, a read-write bind
// mount is still served per container, and a file changed on the host is
// seen (no stale data); the shared gofer never serves it.
func TestSharedGoferBindPerContainer(t *testing.T) {
	e := sharedEnv(t, "--shared-gofer-idle=1s")
	dir, bind := sharedDir(e)
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("v1"), 0o644))
	id, b := holding(e, bind, func(s *specsSpec) { s.Root.Readonly = false })
	if len(sharedGofers(b.rootfs())) != 1 || len(gofersOf(b.dir)) != 1 {
		t.Fatalf("want one shared gofer for the root and one of the container's own for /shared")
	}
	if out := e.moat("exec", id, "probe", "cat", "/shared/f"); out != "v1" {
		t.Fatalf("read %q, want v1", out)
	}
	must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("version 2"), 0o644))
	deadline := time.Now().Add(5 * time.Second)
	for e.moat("exec", id, "probe", "cat", "/shared/f") != "version 2" {
		if time.Now().After(deadline) {
			t.Fatalf("the host's change under the bind mount is not seen")
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.moat("exec", id, "probe", "write", "/shared/g", "from inside")
	if data, err := os.ReadFile(filepath.Join(dir, "g")); err != nil || string(data) != "from inside" {
		t.Errorf("a write to the bind mount did not reach the host: %q %v", data, err)
	}
	e.moat("delete", "--force", id)
	waitSharedGone(t, b.rootfs(), 30*time.Second)
}

// checkGoferConfined: the shared gofer is confined as a container's is,
// keeping only CAP_DAC_OVERRIDE (it serves a read-only tree).
func checkGoferConfined(t *testing.T, pid int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	want := map[string]string{"NoNewPrivs": "1", "Seccomp": "2"}
	for _, line := range strings.Split(string(status), "\n") {
		name, v, ok := strings.Cut(line, ":\t")
		if !ok {
			continue
		}
		if w, ok := want[name]; ok && strings.TrimSpace(v) != w {
			t.Errorf("shared gofer %s = %s, want %s", name, v, w)
		}
		if name == "CapEff" || name == "CapPrm" || name == "CapBnd" {
			set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			must(t, err)
			const caps = 1 << unix.CAP_DAC_OVERRIDE
			if set != caps {
				t.Errorf("shared gofer %s = %#x, want %#x", name, set, uint64(caps))
			}
		}
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); ns == self || ns == "" {
		t.Errorf("shared gofer in the host's mount namespace (%q)", ns)
	}
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("shared gofer is not in a session of its own (sid %d, %v)", sid, err)
	}
}

// waitSharedGone waits for the shared gofer of rootfs to exit after its idle time.
func waitSharedGone(t *testing.T, rootfs string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for len(sharedGofers(rootfs)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the shared gofer is still there %s after its last container", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := mountsUnder(rootfs); m != "" {
		t.Errorf("a mount of the image is left: %s", m)
	}
}

// TestSharedGoferKilledFailsClosed: kill -9 of the shared gofer ends every
// container it served (their files are gone with it), and nothing is left.
func TestSharedGoferKilledFailsClosed(t *testing.T) {
	e := sharedEnv(t)
	logFile := filepath.Join(e.dir, "moat.log")
	e.globals = append(e.globals, "--log", logFile)
	b := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) { s.Root.Readonly = false })
	id1, id2 := e.id(), e.id()
	e.moat("run", "-d", "--bundle", b.dir, id1)
	e.moat("run", "-d", "--bundle", b.dir, id2)
	shared := sharedGofers(b.rootfs())
	if len(shared) != 1 {
		t.Fatalf("%d shared gofers for the image, want 1", len(shared))
	}
	must(t, unix.Kill(shared[0], unix.SIGKILL))
	e.waitStatus(id1, "stopped")
	e.waitStatus(id2, "stopped")
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "shared gofer gone") {
		t.Errorf("the log does not say the shared gofer went:\n%s", data)
	}
	e.moat("delete", id1)
	e.moat("delete", id2)
	waitSharedGone(t, b.rootfs(), 10*time.Second)
}

// TestSharedGoferRootlessOwnGofer: rootless, --shared-gofer is ignored (a
// FUSE mount made in one user namespace cannot serve a sibling's): the
// container gets a gofer of its own, and nothing outlives it.
func TestSharedGoferRootlessOwnGofer(t *testing.T) {
	needGofer(t)
	if !rootless {
		t.Skip("SKIP (this tier runs as real root): the rootless fallback")
	}
	e := newEnv(t)
	e.globals = append(e.globals, "--shared-gofer")
	id, b := holding(e, func(s *specsSpec) { s.Root.Readonly = false })
	if own := gofersOf(b.dir); len(own) != 1 {
		t.Errorf("%d gofers of the container's own, want 1", len(own))
	}
	if shared := sharedGofers(b.rootfs()); len(shared) != 0 {
		t.Errorf("a rootless container started a shared gofer: %v", shared)
	}
	e.moat("delete", "--force", id)
}
