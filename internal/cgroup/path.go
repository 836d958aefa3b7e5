package cgroup

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/systemd"
)

// defaultScopePrefix names the systemd scope of a container whose spec has no
// cgroupsPath: "moat-<id>.scope" in the driver's default slice, the way runc
// uses "runc-<id>.scope".
const defaultScopePrefix = "moat"

// placement fills the naming fields (Path, or Parent/ScopePrefix/Name) of cg
// from the container ID and the spec's linux.cgroupsPath, following runc:
//
//   - cgroupfs, no cgroupsPath: Name = id, a cgroup named after the container
//     below moat's own cgroup (v1: per controller; v2: the parent of moat's
//     cgroup, as a process-populated cgroup cannot get children with
//     controllers).
//   - cgroupfs, cgroupsPath: an absolute path is relative to the hierarchy
//     root, a relative one to moat's own cgroup (as above).
//   - systemd, no cgroupsPath: scope "moat-<id>.scope" in system.slice
//     (user.slice when rootless).
//   - systemd, cgroupsPath "slice:prefix:name": scope "prefix-name.scope" in
//     slice (or the slice "name" itself when name ends in ".slice").
//
// It rejects paths that are ambiguous or dangerous instead of silently
// cleaning them.
func placement(cg *cgroups.Cgroup, id, path string, useSystemd bool) error {
	if err := checkID(id); err != nil {
		return err
	}
	if strings.ContainsRune(path, 0) {
		return fmt.Errorf("invalid linux.cgroupsPath %q: contains a NUL byte", path)
	}
	if useSystemd {
		return systemdPlacement(cg, id, path)
	}
	return fsPlacement(cg, id, path)
}

// checkID validates the container ID as a single cgroup path component.
func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("invalid container id: empty")
	case id == "." || id == ".." || strings.ContainsAny(id, "/\x00"):
		return fmt.Errorf("invalid container id %q: must be a single path component", id)
	}
	return nil
}

// fsPlacement implements placement for the cgroupfs drivers (fs, fs2).
func fsPlacement(cg *cgroups.Cgroup, id, path string) error {
	if path == "" {
		cg.Name = id
		return nil
	}
	if looksLikeSystemdPath(path) {
		return fmt.Errorf("invalid linux.cgroupsPath %q: this is a systemd %q path; "+
			"use the systemd cgroup driver (--systemd-cgroup) or a cgroupfs path such as %q",
			path, "slice:prefix:name", "/moat/"+id)
	}
	for _, elem := range strings.Split(path, "/") {
		if elem == ".." {
			return fmt.Errorf("invalid linux.cgroupsPath %q: must not contain %q components", path, "..")
		}
	}
	clean := filepath.Clean(path)
	if clean == "/" || clean == "." {
		return fmt.Errorf("invalid linux.cgroupsPath %q: names the root cgroup, "+
			"which a container must not own", path)
	}
	cg.Path = clean
	return nil
}

// looksLikeSystemdPath reports whether p has the systemd "slice:prefix:name"
// shape, which containerd, Docker and Kubernetes send when configured for the
// systemd driver. Such a path reaching the cgroupfs driver is a configuration
// mismatch, not a directory name anybody wants.
func looksLikeSystemdPath(p string) bool {
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return false
	}
	return parts[0] == "" || strings.HasSuffix(parts[0], ".slice")
}

// systemdPlacement implements placement for the systemd drivers.
func systemdPlacement(cg *cgroups.Cgroup, id, path string) error {
	if path == "" {
		cg.ScopePrefix = defaultScopePrefix
		cg.Name = id
		return nil
	}
	parts := strings.Split(path, ":")
	if len(parts) != 3 {
		return fmt.Errorf("invalid linux.cgroupsPath %q for the systemd cgroup driver: "+
			"want \"slice:prefix:name\" (e.g. %q)", path, "system.slice:moat:"+id)
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	if slice != "" {
		if _, err := systemd.ExpandSlice(slice); err != nil {
			return fmt.Errorf("invalid linux.cgroupsPath %q: bad slice %q: %w", path, slice, err)
		}
	}
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("invalid linux.cgroupsPath %q: name %q must be a non-empty unit name without '/'", path, name)
	}
	if prefix == "" && !strings.HasSuffix(name, ".slice") {
		return fmt.Errorf("invalid linux.cgroupsPath %q: empty scope prefix (want e.g. %q)", path, slice+":moat:"+name)
	}
	cg.Parent, cg.ScopePrefix, cg.Name = slice, prefix, name
	return nil
}
