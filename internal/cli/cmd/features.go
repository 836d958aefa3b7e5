package cmd

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/moat-sandbox/moat/internal/hooks"
	"github.com/moat-sandbox/moat/internal/seccomp"
	"github.com/moat-sandbox/moat/internal/spec"
)

// Features is `moat features`: what this moat supports, as OCI features JSON.
func Features() *Command {
	return &Command{
		Name: "features", Short: "print the OCI features this runtime supports (JSON)", MinArgs: 0, MaxArgs: 0,
		Run: func(env *Env, args []string) (int, error) {
			data, err := json.MarshalIndent(featureSet(), "", "    ")
			if err != nil {
				return 1, err
			}
			_, err = env.Stdout.Write(append(data, '\n'))
			return ok(err)
		},
	}
}

func featureSet() *features.Features {
	yes, no := true, false
	apparmor, selinux := spec.AppArmorEnabled(), spec.SELinuxEnabled()
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks: []string{string(hooks.Prestart), string(hooks.CreateRuntime), string(hooks.CreateContainer),
			string(hooks.StartContainer), string(hooks.Poststart), string(hooks.Poststop)},
		MountOptions: spec.MountOptionNames(),
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"},
			Capabilities: spec.CapabilityNames(),
			Cgroup:       &features.Cgroup{V1: &yes, V2: &yes, Systemd: &yes, SystemdUser: &no, Rdma: &yes},
			Seccomp: &features.Seccomp{
				Enabled: &yes, Actions: seccomp.SupportedActions(), Operators: seccomp.SupportedOperators(),
				Archs: seccomp.SupportedArchitectures(), KnownFlags: seccomp.SupportedFlags(),
				SupportedFlags: seccomp.SupportedFlags(),
			},
			Apparmor:        &features.Apparmor{Enabled: &apparmor},
			Selinux:         &features.Selinux{Enabled: &selinux},
			IntelRdt:        &features.IntelRdt{Enabled: &no},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &no}},
			NetDevices:      &features.NetDevices{Enabled: &no},
		},
	}
}
