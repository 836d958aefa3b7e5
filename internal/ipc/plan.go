package ipc

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Plan is what the CLI works out once for a container and hands to boot on
// --plan-fd; boot forwards each child its part. No process below the CLI
// re-applies annotations, re-resolves bundle paths or touches host files to
// decide what the CLI decided. (The effective global settings travel as
// boot's flags: the operator's, with the bundle's annotations applied.)
type Plan struct {
	// Spec is the effective spec: namespaces matched to the network mode,
	// the sandbox network's /etc files mounted.
	Spec *specs.Spec `json:"spec"`
	// Rootfs is the absolute root filesystem path.
	Rootfs string `json:"rootfs"`
	// GoferMounts are the indices in Spec.Mounts of the bind mounts the
	// gofer serves (host directories, not kernel file systems); nil with
	// --file-access=direct.
	GoferMounts []int `json:"goferMounts,omitempty"`
	// Network is the sandbox network, nil without one.
	Network *NetworkPlan `json:"network,omitempty"`
}

// NetworkPlan is the sandbox network's part of the plan that the flags do
// not carry.
type NetworkPlan struct {
	// DNSServers are the upstream resolvers ("IP:port"): --dns, else the
	// host's resolv.conf as the CLI read it.
	DNSServers []string `json:"dnsServers,omitempty"`
}

// PlanMemfd puts p in a memfd for --plan-fd.
func PlanMemfd(p *Plan) (*os.File, error) { return SpecMemfd(p) }

// ReadPlan decodes the plan from its memfd (once, in boot).
func ReadPlan(f io.Reader) (*Plan, error) {
	var p Plan
	if err := json.NewDecoder(io.LimitReader(f, 64<<20)).Decode(&p); err != nil {
		return nil, fmt.Errorf("decode the plan: %w", err)
	}
	if p.Spec == nil || p.Spec.Process == nil || p.Spec.Linux == nil || p.Rootfs == "" {
		return nil, fmt.Errorf("decode the plan: incomplete (no spec, process, linux section or rootfs)")
	}
	return &p, nil
}

// IoIndex is the position of a served tree's io socket: 0 for the root
// (specIndex -1), else 1 + the position of specIndex in served (the
// plan's GoferMounts); -1 when specIndex is not among them. Boot and the
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
