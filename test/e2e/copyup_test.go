package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestTmpCopyUp: a tmpfs with runc's "tmpcopyup" (Podman gives --read-only
// containers such tmpfs mounts on /tmp, /var/tmp and /run) starts with what
// its destination holds in the image: files with their content, mode and
// owner, subdirectories, symlinks as links (never followed). Writes go to
// the tmpfs; the image is not touched.
func TestTmpCopyUp(t *testing.T) {
	e := newEnv(t)
	b := e.newBundle([]string{"hold", "600"}, func(s *specsSpec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=755", "tmpcopyup"}})
	})
	data := filepath.Join(b.rootfs(), "data")
	must(t, os.MkdirAll(filepath.Join(data, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(data, "file"), []byte("from the image"), 0o604))
	must(t, os.Chmod(filepath.Join(data, "file"), 0o604))
	must(t, os.WriteFile(filepath.Join(data, "sub", "deep"), []byte("deep"), 0o644))
	must(t, os.Symlink("/etc/passwd", filepath.Join(data, "link")))
	if !rootless {
		must(t, os.Chown(filepath.Join(data, "file"), 1000, 1000))
	}
	id := e.id()
	e.moat("run", "-d", "--bundle", b.dir, id)

	if out := e.moat("exec", id, "probe", "cat", "/data/file"); out != "from the image" {
		t.Errorf("/data/file reads %q", out)
	}
	if out := e.moat("exec", id, "probe", "cat", "/data/sub/deep"); out != "deep" {
		t.Errorf("/data/sub/deep reads %q", out)
	}
	if out := strings.TrimSpace(e.moat("exec", id, "probe", "readlink", "/data/link")); out != "/etc/passwd" {
		t.Errorf("/data/link points at %q", out)
	}
	var st struct {
		Mode string `json:"mode"`
		UID  uint32 `json:"uid"`
	}
	execJSON(e, &st, []string{id}, "stat", "/data/file")
	if st.Mode != "0604" || (!rootless && st.UID != 1000) {
		t.Errorf("/data/file copied as %+v, want mode 0604 (owner 1000 as root)", st)
	}
	e.moat("exec", id, "probe", "write", "/data/new", "x")
	if mounts := e.moat("exec", id, "probe", "mounts"); !strings.Contains(mounts, " /data ") || !strings.Contains(mounts, "tmpfs") {
		t.Errorf("/data is not a tmpfs:\n%s", mounts)
	}
	if _, err := os.Lstat(filepath.Join(data, "new")); err == nil {
		t.Error("a write to the tmpfs reached the image")
	}
	e.moat("delete", "--force", id)
}

// TestOptionalBindGone: a bind mount marked x-moat-optional (moat do's host
// submounts, which come and go with the host) whose source is gone is left
// out; the container runs and its other mounts are there. A plain bind
// mount of a missing source still fails the create.
func TestOptionalBindGone(t *testing.T) {
	e := newEnv(t)
	present := filepath.Join(e.dir, "present")
	must(t, os.MkdirAll(present, 0o755))
	must(t, os.WriteFile(filepath.Join(present, "f"), []byte("here"), 0o644))
	gone := filepath.Join(e.dir, "gone")
	b := e.newBundle([]string{"cat", "/b/f"}, func(s *specsSpec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/a", Type: "bind", Source: gone, Options: []string{"rbind", "ro", "x-moat-optional"}},
			specs.Mount{Destination: "/b", Type: "bind", Source: present, Options: []string{"rbind", "ro"}})
	})
	if out := e.moat("run", "--bundle", b.dir, e.id()); out != "here" {
		t.Errorf("container with an optional mount gone printed %q", out)
	}
	b.spec.Mounts[len(b.spec.Mounts)-2].Options = []string{"rbind", "ro"}
	b.save(t)
	e.fails("gone", "run", "--bundle", b.dir, e.id())
}
