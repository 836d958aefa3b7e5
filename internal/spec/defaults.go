package spec

import specs "github.com/opencontainers/runtime-spec/specs-go"

// The defaults a spec moat generates starts from (`moat spec`, `moat do`):
// every namespace but the user's, and runc's masked and read-only paths.
// Each call returns fresh slices the caller may change.

// DefaultNamespaces are the namespaces a generated spec asks for.
func DefaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
	}
}

// DefaultMaskedPaths are hidden from a generated spec's container.
func DefaultMaskedPaths() []string {
	return []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"}
}

// DefaultReadonlyPaths are read-only in a generated spec's container.
func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}
