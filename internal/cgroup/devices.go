package cgroup

import (
	"errors"
	"fmt"

	"github.com/opencontainers/cgroups"
	// The devices package installs the device-cgroup writers (the v1
	// devices.allow/deny emulator, the v2 eBPF filter and the systemd
	// DeviceAllow= generator) into the library hooks from its init function;
	// v0.1.0 exports no setter. Without it every manager refuses device rules
	// with cgroups.ErrDevicesUnsupported. checkDeviceHooks verifies the wiring.
	_ "github.com/opencontainers/cgroups/devices"
	devcfg "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// checkDeviceHooks fails closed if the library's device-cgroup hooks are not
// installed, so a container is never started with its device allowlist
// silently unenforced.
func checkDeviceHooks() error {
	if cgroups.DevicesSetV1 == nil || cgroups.DevicesSetV2 == nil {
		return errors.New("device cgroup support is not wired: github.com/opencontainers/cgroups/devices did not install its hooks")
	}
	return nil
}

func allowChar(major, minor int64) *devcfg.Rule {
	return &devcfg.Rule{Type: devcfg.CharDevice, Major: major, Minor: minor, Permissions: "rwm", Allow: true}
}

// defaultDeviceRules returns runc's default allowlist, appended after the
// spec's own rules so a spec cannot take these basics away: mknod of any
// char/block device (opening one still needs its own rule), /dev/null, zero,
// full, random, urandom, tty, ptmx and the devpts slaves. Fresh rules on each
// call, as the library may keep pointers.
func defaultDeviceRules() []*devcfg.Rule {
	const wild = devcfg.Wildcard
	return []*devcfg.Rule{
		{Type: devcfg.CharDevice, Major: wild, Minor: wild, Permissions: "m", Allow: true},
		{Type: devcfg.BlockDevice, Major: wild, Minor: wild, Permissions: "m", Allow: true},
		allowChar(1, 3),      // /dev/null
		allowChar(1, 5),      // /dev/zero
		allowChar(1, 7),      // /dev/full
		allowChar(1, 8),      // /dev/random
		allowChar(1, 9),      // /dev/urandom
		allowChar(5, 0),      // /dev/tty
		allowChar(5, 2),      // /dev/ptmx
		allowChar(136, wild), // /dev/pts/*
	}
}

// deviceRules builds the device cgroup allowlist: the spec's
// linux.resources.devices rules in order (the kernel/emulator starts from
// deny-all), then the defaults, then an rwm allow rule for every char or block
// device in linux.devices (FIFOs need no rule).
func deviceRules(cgroupRules []specs.LinuxDeviceCgroup, devs []specs.LinuxDevice) ([]*devcfg.Rule, error) {
	rules := make([]*devcfg.Rule, 0, len(cgroupRules)+len(devs)+10)
	for i, d := range cgroupRules {
		rule, err := specRule(i, d)
		if err != nil {
			return nil, err
		}
		rules = append(rules, rule)
	}
	rules = append(rules, defaultDeviceRules()...)
	for i, d := range devs {
		t, err := nodeType(d.Type)
		if err != nil {
			return nil, fmt.Errorf("invalid linux.devices[%d] (%s): %w", i, d.Path, err)
		}
		if t == devcfg.FifoDevice {
			continue
		}
		if d.Major < 0 || d.Minor < 0 {
			return nil, fmt.Errorf("invalid linux.devices[%d] (%s): negative major:minor %d:%d", i, d.Path, d.Major, d.Minor)
		}
		rules = append(rules, &devcfg.Rule{Type: t, Major: d.Major, Minor: d.Minor, Permissions: "rwm", Allow: true})
	}
	return rules, nil
}

// specRule converts linux.resources.devices[i].
func specRule(i int, d specs.LinuxDeviceCgroup) (*devcfg.Rule, error) {
	var t devcfg.Type
	switch d.Type {
	case "", "a":
		t = devcfg.WildcardDevice
	case "b":
		t = devcfg.BlockDevice
	case "c":
		t = devcfg.CharDevice
	default:
		return nil, fmt.Errorf("invalid linux.resources.devices[%d].type %q: must be \"a\", \"b\" or \"c\"", i, d.Type)
	}
	perms := devcfg.Permissions(d.Access)
	if perms.IsEmpty() || !perms.IsValid() {
		return nil, fmt.Errorf("invalid linux.resources.devices[%d].access %q: must be a non-empty combination of \"rwm\"", i, d.Access)
	}
	rule := &devcfg.Rule{Type: t, Major: devcfg.Wildcard, Minor: devcfg.Wildcard, Permissions: perms, Allow: d.Allow}
	for _, n := range []struct {
		name string
		in   *int64
		out  *int64
	}{{"major", d.Major, &rule.Major}, {"minor", d.Minor, &rule.Minor}} {
		if n.in == nil {
			continue
		}
		if *n.in < devcfg.Wildcard {
			return nil, fmt.Errorf("invalid linux.resources.devices[%d].%s %d: must be -1 (any) or a device number", i, n.name, *n.in)
		}
		*n.out = *n.in
	}
	return rule, nil
}

// nodeType maps a linux.devices type to a device type.
func nodeType(s string) (devcfg.Type, error) {
	switch s {
	case "c", "u":
		return devcfg.CharDevice, nil
	case "b":
		return devcfg.BlockDevice, nil
	case "p":
		return devcfg.FifoDevice, nil
	}
	return 0, fmt.Errorf("unknown device type %q: must be \"c\", \"u\", \"b\" or \"p\"", s)
}
