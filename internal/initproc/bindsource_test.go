package initproc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/spec"
)

// With the gofer, a bind mount the plan kept for init (a file, a kernel
// file system) that init finds to be a host directory tree now (swapped
// since the CLI looked) is refused before anything is mounted: such trees
// are the gofer's to serve, never bound straight into the container. An
// optional one is left out instead. A relative source is refused: the
// plan's are absolute. (Nothing here mounts: each case fails or leaves
// the mount out before the mount point is made.)
func TestBindNotTreeRefusesSwappedDirectory(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	swapped := filepath.Join(dir, "was-a-file")
	for _, d := range []string{rootfs, swapped} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := openRoot(rootfs, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	mo, err := spec.ParseMountOptions([]string{"bind"})
	if err != nil {
		t.Fatal(err)
	}
	m := specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: swapped, Options: []string{"bind"}}
	if err := r.mountBindNotTree(m, mo); !errors.Is(err, errGoferTree) {
		t.Errorf("a directory tree bound by init: %v, want errGoferTree", err)
	}
	opt, err := spec.ParseMountOptions([]string{"bind", spec.OptionalMount})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.mountBindNotTree(m, opt); err != nil {
		t.Errorf("an optional one: %v, want it left out", err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a mount point was made for a refused bind: %v", err)
	}
	m.Source = "was-a-file"
	if err := r.mountBind(m, mo); err == nil {
		t.Error("a relative bind source was accepted")
	}
}
