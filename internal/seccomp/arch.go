package seccomp

import (
	"runtime"
	"sort"

	"golang.org/x/sys/unix"
)

//go:generate go run ./gen -o zsyscalls.go

// x32Bit is __X32_SYSCALL_BIT: x32 syscalls arrive with AUDIT_ARCH_X86_64 and this bit in nr.
const x32Bit = 0x40000000

// sysEntry is one row of a generated syscall table.
type sysEntry struct {
	name string
	nr   uint32
}

// sysTable is a generated name→number table of one architecture (entries sorted by name).
type sysTable struct {
	maxNr   uint32 // highest regular syscall number (see archInfo.extraLo)
	entries []sysEntry
}

func (t *sysTable) lookup(name string) (uint32, bool) {
	i := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].name >= name })
	if i < len(t.entries) && t.entries[i].name == name {
		return t.entries[i].nr, true
	}
	return 0, false
}

// archInfo describes one seccomp ABI: what seccomp_data.arch says and which numbers it uses.
type archInfo struct {
	name  string // SCMP_ARCH_*
	audit uint32 // AUDIT_ARCH_* seen in seccomp_data.arch
	// bits32: syscall arguments are 32 bits wide; only their low halves are compared (libseccomp).
	bits32 bool
	// x32: the ABI shares audit with x86_64 and its numbers carry x32Bit.
	x32   bool
	table *sysTable
	// extraLo..extraHi are numbers above table.maxNr that the kernel knows (ARM private syscalls,
	// the x32 legacy range): they take the default action, not the ENOSYS of unknown numbers.
	extraLo, extraHi uint32
}

var arches = []*archInfo{
	{name: "SCMP_ARCH_X86_64", audit: unix.AUDIT_ARCH_X86_64, table: &tableX86_64},
	{name: "SCMP_ARCH_X86", audit: unix.AUDIT_ARCH_I386, bits32: true, table: &tableX86},
	{name: "SCMP_ARCH_X32", audit: unix.AUDIT_ARCH_X86_64, bits32: true, x32: true, table: &tableX32,
		extraLo: x32Bit | 512, extraHi: x32Bit | 547},
	{name: "SCMP_ARCH_AARCH64", audit: unix.AUDIT_ARCH_AARCH64, table: &tableAARCH64},
	{name: "SCMP_ARCH_ARM", audit: unix.AUDIT_ARCH_ARM, bits32: true, table: &tableARM,
		extraLo: 0x0f0001, extraHi: 0x0f0006},
}

func archByName(name string) *archInfo {
	for _, a := range arches {
		if a.name == name {
			return a
		}
	}
	return nil
}

// nativeArchName maps GOARCH to the SCMP_ARCH_* name of the running kernel ABI.
func nativeArchName(goarch string) string {
	switch goarch {
	case "amd64":
		return "SCMP_ARCH_X86_64"
	case "386":
		return "SCMP_ARCH_X86"
	case "arm64":
		return "SCMP_ARCH_AARCH64"
	case "arm":
		return "SCMP_ARCH_ARM"
	}
	return ""
}

// NativeArch returns the SCMP_ARCH_* name of the architecture moat runs as, or "" when this
// package cannot build filters for it.
func NativeArch() string { return nativeArchName(runtime.GOARCH) }

// SupportedArchitectures returns the SCMP_ARCH_* names Compile accepts.
func SupportedArchitectures() []string {
	names := make([]string, len(arches))
	for i, a := range arches {
		names[i] = a.name
	}
	return names
}

// SyscallNumber returns the number of syscall name on arch (an SCMP_ARCH_* name), as the
// kernel sees it in seccomp_data.nr (x32 numbers include __X32_SYSCALL_BIT).
func SyscallNumber(arch, name string) (int, bool) {
	a := archByName(arch)
	if a == nil {
		return 0, false
	}
	nr, ok := a.table.lookup(name)
	return int(nr), ok
}
