package initproc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/spec"
)

// cgroupView is what init knows about the container's cgroups when it mounts
// the cgroup filesystem.
type cgroupView struct {
	ownNS bool              // init unshared a cgroup namespace rooted at the container's cgroup
	paths map[string]string // controller ("" for unified) -> host directory of the container's cgroup
}

// hierarchy is one cgroup mount of the host.
type hierarchy struct {
	mountpoint string // e.g. /sys/fs/cgroup/cpu
	fstype     string // cgroup or cgroup2
	super      string // super options: "rw,cpu" or "rw,name=systemd"
}

// hostHierarchies lists the host's cgroup hierarchies from mountinfo, each
// once: a hierarchy mounted twice (the host's /sys bound into the rootfs,
// as `runc spec --rootless` does without a network namespace) would be
// mounted twice on one directory, which the kernel refuses (EBUSY).
func hostHierarchies() ([]hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []hierarchy
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || (qf[0] != "cgroup" && qf[0] != "cgroup2") {
			continue
		}
		h := hierarchy{mountpoint: pf[4], fstype: qf[0], super: qf[2]}
		if !slices.ContainsFunc(out, func(o hierarchy) bool {
			return o.fstype == h.fstype && o.subsystems() == h.subsystems()
		}) {
			out = append(out, h)
		}
	}
	return out, sc.Err()
}

// controllerKey maps a hierarchy to the cgroup manager's path key.
func (h hierarchy) controllerKey() string {
	if h.fstype == "cgroup2" {
		return ""
	}
	return filepath.Base(h.mountpoint)
}

// subsystems returns the mount data for a v1 hierarchy: its controllers or
// "none,name=X".
func (h hierarchy) subsystems() string {
	var keep []string
	for _, o := range strings.Split(h.super, ",") {
		if o == "rw" || o == "ro" {
			continue
		}
		keep = append(keep, o)
	}
	s := strings.Join(keep, ",")
	if strings.HasPrefix(s, "name=") {
		return "none," + s
	}
	return s
}

// mountCgroup gives the container its cgroup filesystem. With its own cgroup
// namespace, fresh cgroup mounts show the container's cgroup as the root;
// without one, the container's own directories are bind-mounted so that it
// never sees the host's tree.
func (r *rootfs) mountCgroup(m specs.Mount, mo *spec.MountOptions, cg *cgroupView) error {
	hs, err := hostHierarchies()
	if err != nil {
		return err
	}
	flags := mo.Flags | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	var unified *hierarchy
	var v1 []hierarchy
	for _, h := range hs {
		if h.fstype == "cgroup2" {
			h := h
			unified = &h
		} else {
			v1 = append(v1, h)
		}
	}
	if len(v1) == 0 && unified != nil {
		return r.mountCgroupLeaf(m.Destination, *unified, flags, cg)
	}
	// v1 or hybrid: a tmpfs holding one directory per hierarchy.
	tm := specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=755"}}
	if err := r.mountFS(tm, &spec.MountOptions{Flags: flags &^ unix.MS_RDONLY, Data: []string{"mode=755"}}); err != nil {
		return err
	}
	for _, h := range v1 {
		if err := r.mountCgroupLeaf(filepath.Join(m.Destination, filepath.Base(h.mountpoint)), h, flags, cg); err != nil {
			return err
		}
		// cpu,cpuacct style co-mounts get a symlink per controller.
		r.comountLinks(m.Destination, h)
	}
	if unified != nil && m.Type == "cgroup" {
		if err := r.mountCgroupLeaf(filepath.Join(m.Destination, "unified"), *unified, flags, cg); err != nil {
			return err
		}
	}
	if flags&unix.MS_RDONLY != 0 {
		return r.remountBind(m.Destination, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, false)
	}
	return nil
}

func (r *rootfs) mountCgroupLeaf(dest string, h hierarchy, flags uintptr, cg *cgroupView) error {
	d, err := r.ensureDir(dest)
	if err != nil {
		return err
	}
	defer d.Close()
	if cg.ownNS {
		data := ""
		if h.fstype == "cgroup" {
			data = h.subsystems()
		}
		if err := unix.Mount("cgroup", fdPath(d), h.fstype, flags, data); err != nil {
			return fmt.Errorf("%s at %s: %w", h.fstype, dest, err)
		}
		return nil
	}
	src, ok := cg.paths[h.controllerKey()]
	if !ok || src == "" {
		// No cgroup of ours in this hierarchy (e.g. name=systemd): leave the
		// directory empty rather than expose the host's.
		return nil
	}
	if err := unix.Mount(src, fdPath(d), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s at %s: %w", src, dest, err)
	}
	return r.remountBind(dest, flags&(unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), false)
}

func (r *rootfs) comountLinks(dest string, h hierarchy) {
	name := filepath.Base(h.mountpoint)
	if !strings.Contains(name, ",") {
		return
	}
	dir, err := r.lookup(dest)
	if err != nil {
		return
	}
	defer dir.Close()
	for _, c := range strings.Split(name, ",") {
		_ = unix.Symlinkat(name, int(dir.Fd()), c)
	}
}
