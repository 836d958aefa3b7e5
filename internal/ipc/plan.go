package ipc

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Plan is what the CLI works out once for a container: boot reads it on
// --plan-fd and forwards each child its part (the gofer BootGoferConfig,
// init BootInitConfig); state.json records it, and every later command
// (exec, kill, ps, delete, state, ...) reads it from there. No process
// below the CLI re-applies annotations, re-resolves bundle paths or touches
// host files to decide what the CLI decided. (The effective global
// settings travel as boot's flags: the operator's, with the bundle's
// annotations applied.)
type Plan struct {
	// Spec is the effective spec: namespaces matched to the network mode,
	// the sandbox network's /etc files mounted, bind sources absolute.
	Spec *specs.Spec `json:"spec"`
	// Rootfs is the absolute root filesystem path.
	Rootfs string `json:"rootfs"`
	// Gofer is the gofer's part, sent to it as it is; nil with
	// --file-access=direct.
	Gofer *BootGoferConfig `json:"gofer,omitempty"`
	// Network is the sandbox network, nil without one.
	Network *NetworkPlan `json:"network,omitempty"`
	// OverlaySize is the size in bytes of init's memory overlay under the
	// gofer's root: --overlay-size, else the container's memory limit,
	// else half the host's memory.
	OverlaySize int64 `json:"overlaySize,omitempty"`
}

// NetworkPlan is the sandbox network's part of the plan that the flags do
// not carry.
type NetworkPlan struct {
	// DNSServers are the upstream resolvers ("IP:port"): --dns, else the
	// host's resolv.conf as the CLI read it.
	DNSServers []string `json:"dnsServers,omitempty"`
}

// BootGoferConfig is the gofer's part of the plan: boot sends it as the
// first message on the gofer's --gofer-sync-fd. The gofer decodes nothing
// else: not the spec, not the bundle.
type BootGoferConfig struct {
	// Rootfs is the absolute root filesystem path.
	Rootfs string `json:"rootfs"`
	// RootReadonly is the spec's root.readonly.
	RootReadonly bool `json:"rootReadonly,omitempty"`
	// Overlay is the effective --overlay ("memory" or "none").
	Overlay string `json:"overlay"`
	// Binds are the bind mounts the gofer serves, in spec order: sources
	// the CLI found to be directories on ordinary file systems.
	Binds []GoferBind `json:"binds,omitempty"`
	// MountPoints are the destinations of every spec mount, in spec
	// order, for the mount points the gofer creates in the image.
	MountPoints []MountPoint `json:"mountPoints,omitempty"`
	// Cwd is process.cwd (created in the image like a mount point).
	Cwd string `json:"cwd,omitempty"`
	// SharedRoot: the image's shared gofer serves the root
	// (--shared-gofer); this one serves only the bind mounts, and closes
	// the root's io socket unused. Set by boot.
	SharedRoot bool `json:"sharedRoot,omitempty"`
}

// Kind implements Message.
func (BootGoferConfig) Kind() string { return "BootGoferConfig" }

// GoferBind is one bind mount the gofer serves.
type GoferBind struct {
	// SpecIndex is the mount's index in spec.mounts.
	SpecIndex int `json:"specIndex"`
	// Source is the absolute host path (the gofer opens it itself and
	// refuses anything but a directory of an ordinary file system).
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	// Optional: a source gone when the gofer opens it is left out.
	Optional bool `json:"optional,omitempty"`
}

// MountPoint is one spec mount's destination; File marks a bind of
// something other than a directory, whose mount point is a file.
type MountPoint struct {
	Destination string `json:"destination"`
	File        bool   `json:"file,omitempty"`
}

// Served lists the spec indices of the bind mounts the gofer serves, in
// order (nil for a nil config).
func (c *BootGoferConfig) Served() []int {
	if c == nil {
		return nil
	}
	out := make([]int, 0, len(c.Binds))
	for _, b := range c.Binds {
		out = append(out, b.SpecIndex)
	}
	return out
}

// PlanMemfd puts p in a memfd for --plan-fd.
func PlanMemfd(p *Plan) (*os.File, error) { return SpecMemfd(p) }

// ReadPlan decodes the plan from its memfd (once, in boot).
func ReadPlan(f io.Reader) (*Plan, error) {
	var p Plan
	if err := json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&p); err != nil {
		return nil, fmt.Errorf("decode the plan: %w", err)
	}
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("decode the plan: %w", err)
	}
	return &p, nil
}

// Check reports a plan missing what every reader relies on.
func (p *Plan) Check() error {
	if p.Spec == nil || p.Spec.Process == nil || p.Spec.Linux == nil || p.Rootfs == "" {
		return fmt.Errorf("incomplete (no spec, process, linux section or rootfs)")
	}
	if g := p.Gofer; g != nil {
		if g.Rootfs != p.Rootfs {
			return fmt.Errorf("the gofer's rootfs %q is not the plan's %q", g.Rootfs, p.Rootfs)
		}
		for _, b := range g.Binds {
			if b.SpecIndex < 0 || b.SpecIndex >= len(p.Spec.Mounts) {
				return fmt.Errorf("the gofer serves mounts[%d], which the spec does not have", b.SpecIndex)
			}
		}
	}
	return nil
}

// IoIndex is the position of a served tree's io socket: 0 for the root
// (specIndex -1), else 1 + the position of specIndex in served (the
// gofer's Served()); -1 when specIndex is not among them. Boot and the
// gofer pair io sockets with the trees the gofer serves through it.
func IoIndex(served []int, specIndex int) int {
	if specIndex < 0 {
		return 0
	}
	if k := slices.Index(served, specIndex); k >= 0 {
		return 1 + k
	}
	return -1
}
