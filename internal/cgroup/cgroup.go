// Package cgroup places a container's processes in cgroups and manages them
// for the container's lifetime, on top of github.com/opencontainers/cgroups
// (fs for cgroup v1 and hybrid hosts, fs2 for v2, systemd for
// --systemd-cgroup). It converts the spec's linux.resources and linux.devices
// into the library's configuration, validating every value with an error that
// names the spec field, and snapshots itself (Saved) so that later CLI
// invocations (pause, resume, update, ps, events, kill --all, delete) can Load
// the same manager back.
//
// Rootless: with Options.Rootless, a cgroup that cannot be created or joined
// for lack of permission is not fatal. New or Apply return an error wrapping
// ErrNoCgroupAccess together with a usable but disabled manager; the caller
// warns once and runs the container without cgroups. The reason is kept in
// Saved, and every later operation that needs cgroups says why they are
// unavailable.
package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/cgroups/systemd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var (
	// ErrNoCgroupAccess reports that a rootless container cannot use cgroups
	// because the target hierarchy is not writable (EACCES, EPERM, EROFS).
	ErrNoCgroupAccess = errors.New("cgroups are unavailable")

	// ErrSystemdNotRunning reports that the systemd cgroup driver was
	// requested on a host that was not booted with systemd.
	ErrSystemdNotRunning = errors.New("systemd is not running on this host")
)

// Options describes the cgroup of one container.
type Options struct {
	// ContainerID names the default cgroup (or systemd scope).
	ContainerID string
	// CgroupsPath is the spec's linux.cgroupsPath: a cgroupfs path
	// (absolute, or relative to moat's own cgroup) or, with Systemd, a
	// "slice:prefix:name" triple. Empty selects runc's defaults with "moat"
	// in place of "runc" (see placement).
	CgroupsPath string
	// Systemd selects the systemd driver (--systemd-cgroup).
	Systemd bool
	// Rootless turns permission failures into ErrNoCgroupAccess.
	Rootless bool
	// Resources is the spec's linux.resources; nil means no limits.
	Resources *specs.LinuxResources
	// Devices is the spec's linux.devices; each char/block device is
	// allowed in the device cgroup in addition to Resources.Devices.
	Devices []specs.LinuxDevice
}

// Saved is a JSON-serialisable snapshot of a Manager for the state file.
type Saved struct {
	ContainerID string                `json:"containerId"`
	CgroupsPath string                `json:"cgroupsPath,omitempty"`
	Systemd     bool                  `json:"systemd,omitempty"`
	Rootless    bool                  `json:"rootless,omitempty"`
	Resources   *specs.LinuxResources `json:"resources,omitempty"` // current, after updates
	Devices     []specs.LinuxDevice   `json:"devices,omitempty"`
	// Paths maps v1 controller names ("" for the hybrid unified
	// hierarchy) to cgroup directories; on v2 its only key is "".
	Paths map[string]string `json:"paths,omitempty"`
	// Unavailable, when set, says why the container runs without cgroups.
	Unavailable string `json:"unavailable,omitempty"`
	// Helpers are moat's own processes charged to the container (AddHelper).
	Helpers *Helpers `json:"helpers,omitempty"`
}

// Manager owns the cgroup(s) of one container. Its methods are safe for
// concurrent use.
type Manager struct {
	mu    sync.Mutex
	saved Saved
	cg    *cgroups.Cgroup
	lm    cgroups.Manager // nil when cgroups are unavailable
	notes []string
}

// New validates o and prepares the container's cgroup without creating
// anything on the host. Invalid values, an unusable cgroupsPath, controllers
// this host lacks and a systemd driver without systemd (ErrSystemdNotRunning)
// are errors with a nil Manager. If o.Rootless and the target is not
// writable, New returns a disabled Manager together with an error wrapping
// ErrNoCgroupAccess.
func New(o Options) (*Manager, error) {
	s := Saved{
		ContainerID: o.ContainerID,
		CgroupsPath: o.CgroupsPath,
		Systemd:     o.Systemd,
		Rootless:    o.Rootless,
		Resources:   cloneResources(o.Resources),
		Devices:     slices.Clone(o.Devices),
	}
	cg, notes, err := s.config()
	if err != nil {
		return nil, err
	}
	lm, err := newLibManager(cg, nil)
	if err != nil {
		return nil, err
	}
	s.Paths = maps.Clone(lm.GetPaths())
	if err := checkControllers(cg.Resources, cgroups.IsCgroup2UnifiedMode(), s.Paths); err != nil {
		return nil, err
	}
	m := &Manager{saved: s, cg: cg, lm: lm, notes: notes}
	if o.Rootless && !o.Systemd {
		if why := probeAccess(s.Paths); why != "" {
			m.disable(why)
			return m, m.unavailable()
		}
	}
	return m, nil
}

// Load rebuilds a Manager from a snapshot taken by Saved, without touching the
// host beyond what the library needs to reconnect (systemd: D-Bus).
func Load(s Saved) (*Manager, error) {
	s = s.clone()
	cg, notes, err := s.config()
	if err != nil {
		return nil, fmt.Errorf("load cgroup state of %q: %w", s.ContainerID, err)
	}
	m := &Manager{saved: s, cg: cg, notes: notes}
	if s.Unavailable != "" {
		return m, nil
	}
	if len(s.Paths) == 0 {
		return nil, fmt.Errorf("load cgroup state of %q: no cgroup paths saved", s.ContainerID)
	}
	for name, p := range s.Paths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("load cgroup state of %q: invalid path %q for controller %q", s.ContainerID, p, name)
		}
	}
	if m.lm, err = newLibManager(cg, s.Paths); err != nil {
		return nil, fmt.Errorf("load cgroup state of %q: %w", s.ContainerID, err)
	}
	return m, nil
}

// Saved returns a snapshot of m for the state file; see Load.
func (m *Manager) Saved() Saved {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saved.clone()
}

// Available reports whether the container really has cgroups (false for a
// rootless container without delegation).
func (m *Manager) Available() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lm != nil
}

// Warnings returns notes about accepted settings that have no effect here
// (e.g. kernel memory limits, v1-only knobs on cgroup v2), for the caller to log.
func (m *Manager) Warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.notes)
}

// Mode reports the host's cgroup layout: "v2" (unified), "hybrid" (v1
// controllers plus a controller-less cgroup2 at /sys/fs/cgroup/unified) or "v1".
func Mode() string {
	switch {
	case cgroups.IsCgroup2UnifiedMode():
		return "v2"
	case cgroups.IsCgroup2HybridMode():
		return "hybrid"
	}
	return "v1"
}

// config builds the library configuration for s.
func (s *Saved) config() (*cgroups.Cgroup, []string, error) {
	if err := checkDeviceHooks(); err != nil {
		return nil, nil, err
	}
	cg := &cgroups.Cgroup{Systemd: s.Systemd, Rootless: s.Rootless}
	if err := placement(cg, s.ContainerID, s.CgroupsPath, s.Systemd); err != nil {
		return nil, nil, err
	}
	res, notes, err := convertResources(s.Resources, cgroups.IsCgroup2UnifiedMode())
	if err != nil {
		return nil, nil, err
	}
	var rules []specs.LinuxDeviceCgroup
	if s.Resources != nil {
		rules = s.Resources.Devices
	}
	if res.Devices, err = deviceRules(rules, s.Devices); err != nil {
		return nil, nil, err
	}
	cg.Resources = res
	if s.Systemd && !systemd.IsRunningSystemd() {
		return nil, nil, fmt.Errorf("systemd cgroup driver requested (--systemd-cgroup), "+
			"but /run/systemd/system does not exist: %w", ErrSystemdNotRunning)
	}
	return cg, notes, nil
}

func (s Saved) clone() Saved {
	s.Resources = cloneResources(s.Resources)
	s.Devices = slices.Clone(s.Devices)
	s.Paths = maps.Clone(s.Paths)
	s.Helpers = s.Helpers.clone()
	return s
}

// cloneResources deep-copies r so that callers' structures are never aliased.
func cloneResources(r *specs.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	data, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("cgroup: marshal LinuxResources: %v", err)) // plain data: cannot fail
	}
	out := new(specs.LinuxResources)
	if err := json.Unmarshal(data, out); err != nil {
		panic(fmt.Sprintf("cgroup: unmarshal LinuxResources: %v", err))
	}
	return out
}

// newLibManager creates the library manager for cg; paths (copied, as the
// library edits its map) come from a snapshot, or nil to compute them.
func newLibManager(cg *cgroups.Cgroup, paths map[string]string) (cgroups.Manager, error) {
	lm, err := manager.NewWithPaths(cg, maps.Clone(paths))
	if err != nil {
		return nil, fmt.Errorf("cgroup manager (%s): %w", Mode(), err)
	}
	return lm, nil
}

// disable switches m to "no cgroups" mode, remembering why.
func (m *Manager) disable(why string) {
	m.saved.Unavailable = why
	m.lm = nil
}

// unavailable is the error returned by operations on a disabled manager.
func (m *Manager) unavailable() error {
	return fmt.Errorf("%w for container %q: %s (moat doctor checks this host)", ErrNoCgroupAccess, m.saved.ContainerID, m.saved.Unavailable)
}

// Why a user may not use cgroups, and the fix: what `moat doctor` says.
const (
	NoV2Reason    = "the host uses cgroup v1 (or hybrid): cgroups cannot be delegated to a user"
	NoV2Fix       = "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1)"
	NoDelegation  = "is not writable: this user has no delegated cgroup v2 subtree"
	DelegationFix = "run moat from a systemd user session with delegation (systemd-run --user --scope -p Delegate=yes ...)"
)

// accessAdvice explains an unwritable cgroup path f as `moat doctor` does.
func accessAdvice(v2 bool, f string) string {
	if !v2 {
		return NoV2Reason + "; " + NoV2Fix
	}
	return f + " " + NoDelegation + "; " + DelegationFix
}

// isAccessError reports whether err means "not allowed to use this cgroup".
func isAccessError(err error) bool {
	return errors.Is(err, cgroups.ErrRootless) || errors.Is(err, unix.EACCES) ||
		errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
}

// bestEffortV1 lists v1 hierarchies the library joins only when it can
// (named and misc hierarchies, the hybrid unified one); they do not decide
// whether a rootless container gets cgroups.
var bestEffortV1 = []string{"", "name=systemd", "misc"}

// probeAccess returns why the cgroup paths cannot be created or joined by the
// calling user, or "" if they look writable. For each path it checks the path
// itself if it exists (and its cgroup.procs), else its nearest existing
// ancestor.
func probeAccess(paths map[string]string) string {
	v2 := cgroups.IsCgroup2UnifiedMode()
	for name, p := range paths {
		if !v2 && slices.Contains(bestEffortV1, name) {
			continue
		}
		dir := p
		for {
			if _, err := os.Stat(dir); err == nil || dir == "/" {
				break
			}
			dir = filepath.Dir(dir)
		}
		check := []string{dir}
		if dir == p {
			check = append(check, filepath.Join(p, cgroups.CgroupProcesses))
		}
		for _, f := range check {
			if err := unix.Faccessat(unix.AT_FDCWD, f, unix.W_OK, unix.AT_EACCESS); err != nil {
				return accessAdvice(v2, f)
			}
		}
	}
	return ""
}
