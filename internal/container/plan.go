package container

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/spec"
)

// goferPlan works out the gofer's part of the plan: which bind mounts it
// serves (sources that are host directories on ordinary file systems;
// kernel file systems, devices and single files are bound by init), each
// with its parsed options, and the mount points it makes in the image.
// The CLI looks at each bind source once, here; boot never does, and the
// gofer only checks again what it opened.
// Precondition: b was validated (bind sources absolute, options parse),
// and the sandbox network's /etc mounts are in b.Spec.
func goferPlan(b *spec.Bundle, cfg *config.Config) (*ipc.BootGoferConfig, error) {
	s := b.Spec
	g := &ipc.BootGoferConfig{Rootfs: b.Rootfs, RootReadonly: s.Root.Readonly, Overlay: cfg.Overlay}
	if s.Process != nil {
		g.Cwd = s.Process.Cwd
	}
	for i, m := range s.Mounts {
		mp := ipc.MountPoint{Destination: m.Destination}
		if !spec.IsBind(m) {
			g.MountPoints = append(g.MountPoints, mp)
			continue
		}
		src := spec.StatBindSource(m.Source)
		mp.File = src.NonDir
		g.MountPoints = append(g.MountPoints, mp)
		if !src.Served {
			continue
		}
		mo, err := spec.ParseMountOptions(m.Options)
		if err != nil {
			return nil, fmt.Errorf("%w: mounts[%d].options: %v", spec.ErrInvalid, i, err)
		}
		g.Binds = append(g.Binds, ipc.GoferBind{
			SpecIndex: i, Source: m.Source, Destination: m.Destination,
			ReadOnly: mo.Flags&unix.MS_RDONLY != 0 || mo.RecAttrSet&unix.MOUNT_ATTR_RDONLY != 0,
			Optional: mo.Optional,
		})
	}
	return g, nil
}

// overlaySize is --overlay-size, else the container's memory limit, else
// half the host's memory.
func overlaySize(cfg *config.Config, res *specs.LinuxResources) (int64, error) {
	if cfg.OverlaySize != "" {
		return config.ParseSize(cfg.OverlaySize)
	}
	if res != nil && res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		return *res.Memory.Limit, nil
	}
	return memTotal() / 2, nil
}

// memTotal is the host's memory in bytes, MemTotal of /proc/meminfo (0 if
// unknown: the overlay is then as large as tmpfs's own default). One
// sysinfo call: no file read and parse on every create.
func memTotal() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
