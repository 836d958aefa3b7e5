package seccomp

import (
	"errors"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// validProfile is a minimal valid profile that validationCases break one way each.
func validProfile() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls:      []specs.LinuxSyscall{sysRule(specs.ActAllow, "read")},
	}
}

var validationCases = []struct {
	name   string
	mutate func(p *specs.LinuxSeccomp)
	want   string // the message, or its prefix when it ends with ": "
	is     error
}{
	{"unknown default action", func(p *specs.LinuxSeccomp) { p.DefaultAction = "SCMP_ACT_FOO" },
		`seccomp: defaultAction: unknown action "SCMP_ACT_FOO"`, ErrUnknownAction},
	{"notify default", func(p *specs.LinuxSeccomp) { p.DefaultAction = specs.ActNotify },
		`seccomp: defaultAction: SCMP_ACT_NOTIFY cannot be the default action`, ErrNotifyDefault},
	{"defaultErrnoRet with allow", func(p *specs.LinuxSeccomp) {
		p.DefaultAction, p.DefaultErrnoRet = specs.ActAllow, uptr(1)
	}, `seccomp: defaultAction: invalid errno return: defaultErrnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE`, ErrInvalidErrnoRet},
	{"defaultErrnoRet too big", func(p *specs.LinuxSeccomp) { p.DefaultErrnoRet = uptr(70000) },
		`seccomp: defaultAction: invalid errno return: defaultErrnoRet 70000 out of range (max 65535)`, ErrInvalidErrnoRet},
	{"unsupported arch", func(p *specs.LinuxSeccomp) {
		p.Architectures = []specs.Arch{specs.ArchX86, specs.ArchPPC64LE}
	}, `seccomp: architectures[1]: unsupported architecture "SCMP_ARCH_PPC64LE"`, ErrUnsupportedArch},
	{"unknown flag", func(p *specs.LinuxSeccomp) {
		p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, "SECCOMP_FILTER_FLAG_FOO"}
	}, `seccomp: flags[1]: unknown flag "SECCOMP_FILTER_FLAG_FOO"`, ErrUnknownFlag},
	{"unknown rule action", func(p *specs.LinuxSeccomp) {
		p.Syscalls = append(p.Syscalls, sysRule("SCMP_ACT_FOO", "write"))
	}, `seccomp: syscalls[1]: unknown action "SCMP_ACT_FOO"`, ErrUnknownAction},
	{"errnoRet with allow", func(p *specs.LinuxSeccomp) { p.Syscalls[0].ErrnoRet = uptr(5) },
		`seccomp: syscalls[0]: invalid errno return: errnoRet is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE`, ErrInvalidErrnoRet},
	{"errnoRet too big", func(p *specs.LinuxSeccomp) {
		p.Syscalls[0].Action, p.Syscalls[0].ErrnoRet = specs.ActTrace, uptr(65536)
	}, `seccomp: syscalls[0]: invalid errno return: errnoRet 65536 out of range (max 65535)`, ErrInvalidErrnoRet},
	{"no names", func(p *specs.LinuxSeccomp) { p.Syscalls[0].Names = nil },
		`seccomp: syscalls[0]: invalid syscall name: names is empty`, ErrInvalidSyscall},
	{"empty name", func(p *specs.LinuxSeccomp) { p.Syscalls[0].Names = []string{"read", ""} },
		`seccomp: syscalls[0].names[1]: invalid syscall name: empty name`, ErrInvalidSyscall},
	{"arg index", func(p *specs.LinuxSeccomp) {
		p.Syscalls[0].Args = []specs.LinuxSeccompArg{arg(0, specs.OpEqualTo, 1), arg(6, specs.OpEqualTo, 1)}
	}, `seccomp: syscalls[0].args[1]: argument index out of range: index 6 (max 5)`, ErrInvalidArgIndex},
	{"unknown operator", func(p *specs.LinuxSeccomp) {
		p.Syscalls[0].Args = []specs.LinuxSeccompArg{arg(0, "SCMP_CMP_FOO", 1)}
	}, `seccomp: syscalls[0].args[0]: unknown operator "SCMP_CMP_FOO"`, ErrUnknownOperator},
	{"too long", func(p *specs.LinuxSeccomp) {
		for _, e := range tableX86_64.entries {
			p.Syscalls = append(p.Syscalls, ruleArgs(specs.ActAllow, e.name,
				arg(0, specs.OpGreaterThan, 1<<40), arg(1, specs.OpLessThan, 1<<40)))
		}
	}, `seccomp: program too long: `, ErrProgramTooLong},
}

func TestValidationErrors(t *testing.T) {
	for _, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			p := validProfile()
			tc.mutate(p)
			_, err := compile(p, "amd64")
			if err == nil {
				t.Fatal("no error")
			}
			got := err.Error()
			if got != tc.want && !(strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(got, tc.want)) {
				t.Errorf("error %q, want %q", got, tc.want)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
	if _, err := compile(nil, "amd64"); err == nil {
		t.Error("nil profile accepted")
	}
	_, err := compile(validProfile(), "riscv64")
	if want := `seccomp: native architecture: unsupported architecture "riscv64"`; err == nil || err.Error() != want {
		t.Errorf("riscv64 native: %v, want %s", err, want)
	}
}

func TestFlags(t *testing.T) {
	all := []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_TSYNC", specs.LinuxSeccompFlagLog,
		specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv}
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: all}
	f := compileFor(t, "amd64", p)
	if want := uint(unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW); f.Flags != want {
		t.Errorf("Flags = %#x, want %#x (no TSYNC, no WAIT_KILLABLE_RECV without a listener)", f.Flags, want)
	}
	p.Syscalls = []specs.LinuxSyscall{sysRule(specs.ActNotify, "getppid")}
	f = compileFor(t, "amd64", p)
	want := uint(unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW |
		unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
	if f.Flags != want || !f.Notify {
		t.Errorf("Flags = %#x Notify = %v, want %#x true", f.Flags, f.Notify, want)
	}
}

func TestSupported(t *testing.T) {
	check := func(name string, got []string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s() = %v lacks %s", name, got, w)
			}
		}
	}
	check("SupportedActions", SupportedActions(), "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
		"SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
		"SCMP_ACT_LOG", "SCMP_ACT_NOTIFY")
	check("SupportedArchitectures", SupportedArchitectures(), amd64, x86, x32, arm64, arm)
	check("SupportedFlags", SupportedFlags(), "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
		"SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
	check("SupportedOperators", SupportedOperators(), "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",
		"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
	// everything advertised is accepted
	for _, a := range SupportedActions() {
		p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{sysRule(specs.LinuxSeccompAction(a), "getpid")}}
		if _, err := compile(p, "amd64"); err != nil {
			t.Errorf("action %s: %v", a, err)
		}
	}
	for _, a := range SupportedArchitectures() {
		p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.Arch(a)}}
		if _, err := compile(p, "amd64"); err != nil {
			t.Errorf("arch %s: %v", a, err)
		}
	}
	for _, fl := range SupportedFlags() {
		p := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlag(fl)}}
		if _, err := compile(p, "amd64"); err != nil {
			t.Errorf("flag %s: %v", fl, err)
		}
	}
}

func TestSyscallNumber(t *testing.T) {
	cases := []struct {
		arch, name string
		want       int
	}{
		{amd64, "read", 0}, {amd64, "getpid", 39}, {amd64, "clone3", 435},
		{x86, "getpid", 20}, {x86, "socketcall", 102},
		{x32, "getpid", x32Bit | 39}, {x32, "ioctl", x32Bit | 514}, {x32, "execve", x32Bit | 520},
		{arm64, "getpid", 172}, {arm64, "openat", 56},
		{arm, "getpid", 20}, {arm, "cacheflush", 0x0f0002}, {arm, "sync_file_range2", 341},
		{arm, "arm_fadvise64_64", 270},
	}
	for _, tc := range cases {
		if got, ok := SyscallNumber(tc.arch, tc.name); !ok || got != tc.want {
			t.Errorf("SyscallNumber(%s, %s) = %#x, %v, want %#x", tc.arch, tc.name, got, ok, tc.want)
		}
	}
	for _, bad := range [][2]string{{amd64, "socketcall"}, {arm64, "open"}, {"SCMP_ARCH_MIPS", "read"}, {amd64, ""}} {
		if n, ok := SyscallNumber(bad[0], bad[1]); ok {
			t.Errorf("SyscallNumber(%s, %s) = %d, want unknown", bad[0], bad[1], n)
		}
	}
	// the native table agrees with x/sys/unix for the running arch
	native := NativeArch()
	for name, want := range map[string]int{"getppid": unix.SYS_GETPPID, "mkdirat": unix.SYS_MKDIRAT,
		"seccomp": unix.SYS_SECCOMP, "uname": unix.SYS_UNAME} {
		if got, ok := SyscallNumber(native, name); !ok || got != want {
			t.Errorf("native %s %s = %d, want %d", native, name, got, want)
		}
	}
}
