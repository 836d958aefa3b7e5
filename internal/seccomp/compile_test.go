package seccomp

import (
	"fmt"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	amd64 = "SCMP_ARCH_X86_64"
	x86   = "SCMP_ARCH_X86"
	x32   = "SCMP_ARCH_X32"
	arm64 = "SCMP_ARCH_AARCH64"
	arm   = "SCMP_ARCH_ARM"

	retAllow       = unix.SECCOMP_RET_ALLOW
	retKillThread  = unix.SECCOMP_RET_KILL_THREAD
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS
	retTrap        = unix.SECCOMP_RET_TRAP
	retLog         = unix.SECCOMP_RET_LOG
	retNotify      = unix.SECCOMP_RET_USER_NOTIF
)

func retErrno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }
func retTrace(msg uint32) uint32   { return unix.SECCOMP_RET_TRACE | msg }
func uptr(v uint) *uint            { return &v }

// compileFor compiles p as if moat ran on goarch and statically checks the program.
func compileFor(t *testing.T, goarch string, p *specs.LinuxSeccomp) *Filter {
	t.Helper()
	f, err := compile(p, goarch)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if err := checkProgram(f.Program); err != nil {
		t.Fatalf("program rejected: %v\n%s", err, disasm(f.Program))
	}
	return f
}

// sysnr returns the number of name on arch or fails the test.
func sysnr(t *testing.T, arch, name string) uint32 {
	t.Helper()
	n, ok := SyscallNumber(arch, name)
	if !ok {
		t.Fatalf("%s has no syscall %q", arch, name)
	}
	return uint32(n)
}

// call is one syscall as the filter sees it.
type call struct {
	arch string // SCMP_ARCH_*
	nr   uint32
	args [6]uint64
}

func (c call) String() string {
	return fmt.Sprintf("%s nr=%#x args=%#x", c.arch, c.nr, c.args)
}

// sys builds a call of a named syscall.
func sys(t *testing.T, arch, name string, args ...uint64) call {
	t.Helper()
	c := call{arch: arch, nr: sysnr(t, arch, name)}
	copy(c.args[:], args)
	return c
}

func evalCall(t *testing.T, f *Filter, c call) uint32 {
	t.Helper()
	a := archByName(c.arch)
	if a == nil {
		t.Fatalf("unknown arch %q", c.arch)
	}
	got, err := runBPF(f.Program, seccompData{nr: c.nr, arch: a.audit, args: c.args})
	if err != nil {
		t.Fatalf("%v: %v", c, err)
	}
	return got
}

// expect is one row of a filter table: the call and the SECCOMP_RET_* value it must get.
type expect struct {
	call call
	want uint32
}

func checkTable(t *testing.T, f *Filter, rows []expect) {
	t.Helper()
	for _, r := range rows {
		if got := evalCall(t, f, r.call); got != r.want {
			t.Errorf("%v: got %#x, want %#x", r.call, got, r.want)
		}
	}
	if t.Failed() {
		t.Logf("program:\n%s", disasm(f.Program))
	}
}

func sysRule(action specs.LinuxSeccompAction, names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: action}
}

func ruleArgs(action specs.LinuxSeccompAction, name string, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: []string{name}, Action: action, Args: args}
}

func arg(index uint, op specs.LinuxSeccompOperator, value uint64) specs.LinuxSeccompArg {
	return specs.LinuxSeccompArg{Index: index, Op: op, Value: value}
}

func TestActions(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			sysRule(specs.ActKill, "getpid"),
			sysRule(specs.ActKillThread, "getppid"),
			sysRule(specs.ActKillProcess, "getuid"),
			sysRule(specs.ActTrap, "getgid"),
			sysRule(specs.ActErrno, "geteuid"),
			{Names: []string{"getegid"}, Action: specs.ActErrno, ErrnoRet: uptr(42)},
			sysRule(specs.ActTrace, "gettid"),
			{Names: []string{"getpgrp"}, Action: specs.ActTrace, ErrnoRet: uptr(7)},
			sysRule(specs.ActLog, "uname"),
			sysRule(specs.ActNotify, "umask"),
		},
	}
	f := compileFor(t, "amd64", p)
	checkTable(t, f, []expect{
		{sys(t, amd64, "getpid"), retKillThread},
		{sys(t, amd64, "getppid"), retKillThread},
		{sys(t, amd64, "getuid"), retKillProcess},
		{sys(t, amd64, "getgid"), retTrap},
		{sys(t, amd64, "geteuid"), retErrno(unix.EPERM)},
		{sys(t, amd64, "getegid"), retErrno(42)},
		{sys(t, amd64, "gettid"), retTrace(uint32(unix.EPERM))},
		{sys(t, amd64, "getpgrp"), retTrace(7)},
		{sys(t, amd64, "uname"), retLog},
		{sys(t, amd64, "umask"), retNotify},
		{sys(t, amd64, "read"), retAllow},
	})
	if !f.Notify {
		t.Error("Notify = false for a profile using SCMP_ACT_NOTIFY")
	}
}

func TestDefaultErrnoRet(t *testing.T) {
	cases := []struct {
		name string
		p    specs.LinuxSeccomp
		rows []expect
	}{
		{"errno default EPERM", specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
			[]expect{{sys(t, amd64, "uname"), retErrno(unix.EPERM)}}},
		{"errno defaultErrnoRet", specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uptr(13),
			Syscalls: []specs.LinuxSyscall{sysRule(specs.ActErrno, "getpid"), sysRule(specs.ActAllow, "read")}},
			[]expect{
				{sys(t, amd64, "uname"), retErrno(13)},
				{sys(t, amd64, "getpid"), retErrno(unix.EPERM)}, // a rule's errno does not inherit
				{sys(t, amd64, "read"), retAllow},
			}},
		{"trace defaultErrnoRet", specs.LinuxSeccomp{DefaultAction: specs.ActTrace, DefaultErrnoRet: uptr(5)},
			[]expect{{sys(t, amd64, "uname"), retTrace(5)}}},
		{"kill default", specs.LinuxSeccomp{DefaultAction: specs.ActKill},
			[]expect{{sys(t, amd64, "uname"), retKillThread}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			checkTable(t, compileFor(t, "amd64", &tc.p), tc.rows)
		})
	}
}

// interesting64 are argument values and comparison operands whose halves differ in every way.
var interesting64 = []uint64{
	0, 1, 5, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
	0x1_00000000, 0x1_00000004, 0x1_00000005, 0x1_00000006, 0x1_ffffffff,
	0x2_00000000, 0x2_00000005, 0x80000000_00000000, 0xffffffff_00000000,
	0xffffffff_fffffffe, 0xffffffff_ffffffff,
}

// refCmp is the meaning of an operator, on width-bit arguments.
func refCmp(o specs.LinuxSeccompOperator, argv, v, v2 uint64, width int) bool {
	if width == 32 {
		argv, v, v2 = uint64(uint32(argv)), uint64(uint32(v)), uint64(uint32(v2))
	}
	switch o {
	case specs.OpEqualTo:
		return argv == v
	case specs.OpNotEqual:
		return argv != v
	case specs.OpLessThan:
		return argv < v
	case specs.OpLessEqual:
		return argv <= v
	case specs.OpGreaterThan:
		return argv > v
	case specs.OpGreaterEqual:
		return argv >= v
	case specs.OpMaskedEqual:
		return argv&v == v2
	}
	panic(o)
}

// TestOperators checks every operator against refCmp on every pair of interesting values, for
// a 64-bit ABI (both halves compared) and a 32-bit one (low halves only), on every argument.
func TestOperators(t *testing.T) {
	for _, arch := range []struct {
		name, goarch string
		width        int
	}{{amd64, "amd64", 64}, {x86, "386", 32}, {arm64, "arm64", 64}, {arm, "arm", 32}} {
		for _, o := range SupportedOperators() {
			op := specs.LinuxSeccompOperator(o)
			t.Run(arch.name+"/"+o, func(t *testing.T) {
				testOperator(t, arch.name, arch.goarch, arch.width, op)
			})
		}
	}
}

func testOperator(t *testing.T, arch, goarch string, width int, op specs.LinuxSeccompOperator) {
	for i, v := range interesting64 {
		v2 := interesting64[(i+7)%len(interesting64)] & v // a datum inside the mask
		idx := uint(i % maxArgs)
		a := specs.LinuxSeccompArg{Index: idx, Op: op, Value: v, ValueTwo: v2}
		p := &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls:      []specs.LinuxSyscall{ruleArgs(specs.ActErrno, "getppid", a)},
		}
		f := compileFor(t, goarch, p)
		for _, argv := range interesting64 {
			c := sys(t, arch, "getppid")
			c.args[idx] = argv
			c.args[(idx+1)%maxArgs] = ^argv // other arguments must not matter
			want := uint32(retAllow)
			if refCmp(op, argv, v, v2, width) {
				want = retErrno(unix.EPERM)
			}
			if got := evalCall(t, f, c); got != want {
				t.Errorf("arg%d=%#x %s value=%#x valueTwo=%#x: got %#x, want %#x",
					idx, argv, op, v, v2, got, want)
			}
		}
	}
}

func TestArgsAndRulesPrecedence(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls: []specs.LinuxSyscall{
			// getppid: AND of two args, OR of rules, the most restrictive match wins
			ruleArgs(specs.ActAllow, "getppid", arg(0, specs.OpEqualTo, 1), arg(1, specs.OpEqualTo, 2)),
			ruleArgs(specs.ActAllow, "getppid", arg(0, specs.OpEqualTo, 10)),
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uptr(5),
				Args: []specs.LinuxSeccompArg{arg(2, specs.OpEqualTo, 3)}},
			ruleArgs(specs.ActKillProcess, "getppid", arg(0, specs.OpEqualTo, 1), arg(2, specs.OpEqualTo, 3)),
			ruleArgs(specs.ActLog, "getppid", arg(3, specs.OpGreaterThan, 100)),
			ruleArgs(specs.ActTrap, "getppid", arg(4, specs.OpEqualTo, 1)),
			// getpid: unconditional TRAP is more restrictive than the conditional ALLOW
			sysRule(specs.ActAllow, "getpid"),
			ruleArgs(specs.ActTrap, "getpid", arg(0, specs.OpEqualTo, 1)),
			// equal precedence: profile order decides
			{Names: []string{"getuid"}, Action: specs.ActErrno, ErrnoRet: uptr(20)},
			{Names: []string{"getuid"}, Action: specs.ActErrno, ErrnoRet: uptr(21)},
			// a rule with the default action is dropped: the ALLOW stands alone
			sysRule(specs.ActErrno, "getgid"),
			ruleArgs(specs.ActAllow, "getgid", arg(0, specs.OpNotEqual, 9)),
		},
	}
	f := compileFor(t, "amd64", p)
	checkTable(t, f, []expect{
		{sys(t, amd64, "getppid", 1, 2), retAllow},
		{sys(t, amd64, "getppid", 1, 3), retErrno(unix.EPERM)}, // AND fails: default
		{sys(t, amd64, "getppid", 2, 2), retErrno(unix.EPERM)},
		{sys(t, amd64, "getppid", 10), retAllow},
		{sys(t, amd64, "getppid", 10, 0, 3), retErrno(5)}, // ERRNO beats ALLOW
		{sys(t, amd64, "getppid", 1, 2, 3), retKillProcess},
		{sys(t, amd64, "getppid", 10, 0, 0, 101), retLog}, // LOG beats ALLOW
		{sys(t, amd64, "getppid", 0, 0, 0, 101), retLog},
		{sys(t, amd64, "getppid", 0, 0, 3, 101), retErrno(5)}, // ERRNO beats LOG
		{sys(t, amd64, "getppid", 1, 2, 3, 0, 1), retKillProcess},
		{sys(t, amd64, "getppid", 1, 2, 0, 0, 1), retTrap}, // TRAP beats ALLOW
		{sys(t, amd64, "getpid"), retAllow},
		{sys(t, amd64, "getpid", 1), retTrap},
		{sys(t, amd64, "getuid"), retErrno(20)},
		{sys(t, amd64, "getgid", 9), retErrno(unix.EPERM)},
		{sys(t, amd64, "getgid", 8), retAllow},
	})
}

func TestArchitectures(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86, specs.ArchX86_64, specs.ArchAARCH64, specs.ArchARM},
		Syscalls:      []specs.LinuxSyscall{sysRule(specs.ActAllow, "getpid", "readv")},
	}
	f := compileFor(t, "amd64", p)
	if want := []string{amd64, x86, arm64, arm}; !slices.Equal(f.Architectures, want) {
		t.Errorf("Architectures = %v, want %v", f.Architectures, want)
	}
	rows := []expect{}
	for _, a := range []string{amd64, x86, arm64, arm} {
		rows = append(rows,
			expect{sys(t, a, "getpid"), retAllow},
			expect{sys(t, a, "readv"), retAllow},
			expect{sys(t, a, "uname"), retErrno(unix.EPERM)})
	}
	// an arch the filter does not list, and x32 (not listed either), are killed
	rows = append(rows,
		expect{call{arch: "SCMP_ARCH_PPC64LE_FAKE", nr: 20}, retKillProcess},
		expect{sys(t, x32, "getpid"), retKillProcess},
		expect{call{arch: amd64, nr: x32Bit}, retKillProcess},
		expect{call{arch: amd64, nr: 0xffffffff}, retKillProcess})
	checkTableArches(t, f, rows)

	// only the native arch when none is listed
	f = compileFor(t, "arm64", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow})
	checkTable(t, f, []expect{
		{sys(t, arm64, "getpid"), retAllow},
		{sys(t, arm, "getpid"), retKillProcess},
		{sys(t, amd64, "getpid"), retKillProcess},
	})
}

// checkTableArches is checkTable with made-up arches (audit value 0xdead) allowed.
func checkTableArches(t *testing.T, f *Filter, rows []expect) {
	t.Helper()
	for _, r := range rows {
		audit := uint32(0xdead)
		if a := archByName(r.call.arch); a != nil {
			audit = a.audit
		}
		got, err := runBPF(f.Program, seccompData{nr: r.call.nr, arch: audit, args: r.call.args})
		if err != nil {
			t.Fatal(err)
		}
		if got != r.want {
			t.Errorf("%v: got %#x, want %#x", r.call, got, r.want)
		}
	}
}

func TestX32(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			sysRule(specs.ActAllow, "getpid", "readv"),
			ruleArgs(specs.ActAllow, "getppid", arg(0, specs.OpEqualTo, 0x1_00000001)),
		},
	}
	f := compileFor(t, "amd64", p)
	checkTable(t, f, []expect{
		{sys(t, amd64, "getpid"), retAllow},
		{sys(t, amd64, "readv"), retAllow},
		{call{arch: amd64, nr: 515}, retErrno(unix.ENOSYS)}, // x32 readv number without the bit
		{sys(t, x32, "getpid"), retAllow},
		{sys(t, x32, "readv"), retAllow},
		{call{arch: x32, nr: x32Bit | 19}, retErrno(unix.EPERM)},   // x86_64 readv number: not x32 readv
		{call{arch: x32, nr: x32Bit | 512}, retErrno(unix.EPERM)},  // x32 rt_sigaction: known
		{call{arch: x32, nr: x32Bit | 500}, retErrno(unix.ENOSYS)}, // newer than the table
		{call{arch: x32, nr: x32Bit | 600}, retErrno(unix.ENOSYS)},
		// x32 arguments are 32 bits: only the low half is compared
		{sys(t, x32, "getppid", 1), retAllow},
		{sys(t, amd64, "getppid", 1), retErrno(unix.EPERM)},
		{sys(t, amd64, "getppid", 0x1_00000001), retAllow},
	})
	if got, _ := SyscallNumber(x32, "readv"); got != x32Bit|515 {
		t.Errorf("x32 readv = %#x", got)
	}
	if _, ok := SyscallNumber(x32, "uselib"); ok {
		t.Error("x32 has uselib")
	}
}

func TestUnknownNewerSyscalls(t *testing.T) {
	maxAMD64 := tableX86_64.maxNr
	deny := compileFor(t, "amd64", &specs.LinuxSeccomp{
		DefaultAction: specs.ActKillProcess,
		Syscalls:      []specs.LinuxSyscall{sysRule(specs.ActAllow, "getpid")},
	})
	checkTable(t, deny, []expect{
		{sys(t, amd64, "getpid"), retAllow},
		{sys(t, amd64, "uname"), retKillProcess},
		{call{arch: amd64, nr: maxAMD64}, retKillProcess},
		{call{arch: amd64, nr: maxAMD64 + 1}, retErrno(unix.ENOSYS)},
		{call{arch: amd64, nr: 1000}, retErrno(unix.ENOSYS)},
	})
	for _, def := range []specs.LinuxSeccompAction{specs.ActAllow, specs.ActLog} {
		f := compileFor(t, "amd64", &specs.LinuxSeccomp{DefaultAction: def})
		want, _ := actionValue(def, nil, "")
		checkTable(t, f, []expect{{call{arch: amd64, nr: 1000}, want}})
	}
	armf := compileFor(t, "arm", &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Syscalls:      []specs.LinuxSyscall{sysRule(specs.ActAllow, "cacheflush")},
	})
	checkTable(t, armf, []expect{
		{sys(t, arm, "cacheflush"), retAllow},
		{sys(t, arm, "set_tls"), retErrno(unix.EPERM)}, // ARM private, known
		{call{arch: arm, nr: 0x0f0007}, retErrno(unix.ENOSYS)},
		{call{arch: arm, nr: tableARM.maxNr + 1}, retErrno(unix.ENOSYS)},
	})
}

func TestUnknownNamesSkipped(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno,
		Architectures: []specs.Arch{specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			sysRule(specs.ActAllow, "no_such_syscall", "getpid", "arch_prctl", "socketcall"),
		},
	}
	f := compileFor(t, "amd64", p)
	checkTable(t, f, []expect{
		{sys(t, amd64, "getpid"), retAllow},
		{sys(t, amd64, "arch_prctl"), retAllow},
		{sys(t, x86, "getpid"), retAllow},
		{sys(t, x86, "socketcall"), retAllow},
		{sys(t, x86, "arch_prctl"), retAllow},
	})
	want := []SkippedSyscall{
		{amd64, "no_such_syscall"}, {amd64, "socketcall"}, {x86, "no_such_syscall"},
	}
	if !slices.Equal(f.Skipped, want) {
		t.Errorf("Skipped = %v, want %v", f.Skipped, want)
	}
}

// TestLongJumps makes rule blocks far longer than a conditional jump reaches, in the middle
// of the search tree, and checks that every path still gets its answer.
func TestLongJumps(t *testing.T) {
	p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	names := []string{"read", "getppid", "getpid", "uname", "getuid", "mkdirat"}
	for _, name := range names {
		for i := range 120 {
			p.Syscalls = append(p.Syscalls, ruleArgs(specs.ActAllow, name,
				arg(0, specs.OpEqualTo, uint64(i)<<32|uint64(i))))
		}
	}
	p.Syscalls = append(p.Syscalls, sysRule(specs.ActTrap, "write", "close", "openat"))
	f := compileFor(t, "amd64", p)
	jas := 0
	for _, ins := range f.Program {
		if ins.Code == unix.BPF_JMP|unix.BPF_JA {
			jas++
		}
	}
	if len(f.Program) < 2000 || jas == 0 {
		t.Fatalf("program has %d instructions, %d long jumps: not testing long jumps", len(f.Program), jas)
	}
	var rows []expect
	for _, name := range names {
		for _, i := range []uint64{0, 59, 119} {
			rows = append(rows, expect{sys(t, amd64, name, i<<32|i), retAllow})
		}
		rows = append(rows, expect{sys(t, amd64, name, 120<<32|120), retErrno(unix.EPERM)})
		rows = append(rows, expect{sys(t, amd64, name, 5), retErrno(unix.EPERM)})
	}
	for _, name := range []string{"write", "close", "openat"} {
		rows = append(rows, expect{sys(t, amd64, name), retTrap})
	}
	rows = append(rows, expect{sys(t, amd64, "exit"), retErrno(unix.EPERM)})
	checkTable(t, f, rows)
}

// TestEveryKnownSyscall puts a rule on every name of every table and checks each number.
func TestEveryKnownSyscall(t *testing.T) {
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.Arch(a.name)}}
			for i, e := range a.table.entries {
				p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
					Names: []string{e.name}, Action: specs.ActErrno, ErrnoRet: uptr(uint(100 + i%1000)),
				})
			}
			f := compileFor(t, "amd64", p)
			first := map[uint32]int{} // aliases share a number: the first rule decides
			for i, e := range a.table.entries {
				if _, ok := first[e.nr]; !ok {
					first[e.nr] = i
				}
			}
			for _, e := range a.table.entries {
				c := call{arch: a.name, nr: e.nr}
				if got, want := evalCall(t, f, c), retErrno(unix.Errno(100+first[e.nr]%1000)); got != want {
					t.Errorf("%s (%#x): got %#x, want %#x", e.name, e.nr, got, want)
				}
			}
		})
	}
}
