package seccomp

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Sentinel errors wrapped by Compile's validation errors.
var (
	ErrUnknownAction   = errors.New("unknown action")
	ErrUnsupportedArch = errors.New("unsupported architecture")
	ErrUnknownFlag     = errors.New("unknown flag")
	ErrUnknownOperator = errors.New("unknown operator")
	ErrInvalidErrnoRet = errors.New("invalid errno return")
	ErrInvalidArgIndex = errors.New("argument index out of range")
	ErrInvalidSyscall  = errors.New("invalid syscall name")
	ErrNotifyDefault   = errors.New("SCMP_ACT_NOTIFY cannot be the default action")
	ErrProgramTooLong  = errors.New("program too long")
)

// actionDef is one SCMP_ACT_* name and the SECCOMP_RET_* value it compiles to.
type actionDef struct {
	name       specs.LinuxSeccompAction
	ret        uint32
	takesErrno bool // the 16-bit data carries errnoRet (ERRNO) or the tracer message (TRACE)
}

var actionDefs = []actionDef{
	{specs.ActKill, unix.SECCOMP_RET_KILL_THREAD, false},
	{specs.ActKillThread, unix.SECCOMP_RET_KILL_THREAD, false},
	{specs.ActKillProcess, unix.SECCOMP_RET_KILL_PROCESS, false},
	{specs.ActTrap, unix.SECCOMP_RET_TRAP, false},
	{specs.ActErrno, unix.SECCOMP_RET_ERRNO, true},
	{specs.ActTrace, unix.SECCOMP_RET_TRACE, true},
	{specs.ActAllow, unix.SECCOMP_RET_ALLOW, false},
	{specs.ActLog, unix.SECCOMP_RET_LOG, false},
	{specs.ActNotify, unix.SECCOMP_RET_USER_NOTIF, false},
}

// flagDefs maps SECCOMP_FILTER_FLAG_* names to the bits passed to seccomp(2). TSYNC maps to
// 0: moat installs the filter on the one thread that execs the container process.
var flagDefs = []struct {
	name specs.LinuxSeccompFlag
	bit  uint
}{
	{"SECCOMP_FILTER_FLAG_TSYNC", 0},
	{specs.LinuxSeccompFlagLog, unix.SECCOMP_FILTER_FLAG_LOG},
	{specs.LinuxSeccompFlagSpecAllow, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW},
	{specs.LinuxSeccompFlagWaitKillableRecv, unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV},
}

// op is a comparison, reduced from SCMP_CMP_* (NE, LT and LE are negations of EQ, GE and GT).
type op int

const (
	opEQ op = iota
	opNE
	opLT
	opLE
	opGE
	opGT
	opMaskedEQ
)

var opNames = []struct {
	name specs.LinuxSeccompOperator
	op   op
}{
	{specs.OpNotEqual, opNE}, {specs.OpLessThan, opLT}, {specs.OpLessEqual, opLE},
	{specs.OpEqualTo, opEQ}, {specs.OpGreaterEqual, opGE}, {specs.OpGreaterThan, opGT},
	{specs.OpMaskedEqual, opMaskedEQ},
}

// cond is one argument comparison of a rule. For opMaskedEQ, value is the mask and valueTwo
// the datum: (arg & value) == valueTwo.
type cond struct {
	arg             uint
	op              op
	value, valueTwo uint64
}

// rule is one validated entry of profile.Syscalls.
type rule struct {
	index  int
	names  []string
	action uint32
	conds  []cond
}

// profile is a validated LinuxSeccomp.
type profile struct {
	defaultAction uint32
	arches        []*archInfo // native first, no duplicates
	flags         uint
	notify        bool
	rules         []rule
}

// SupportedActions returns the SCMP_ACT_* names Compile accepts.
func SupportedActions() []string {
	names := make([]string, len(actionDefs))
	for i, a := range actionDefs {
		names[i] = string(a.name)
	}
	return names
}

// SupportedFlags returns the SECCOMP_FILTER_FLAG_* names Compile accepts.
func SupportedFlags() []string {
	names := make([]string, len(flagDefs))
	for i, f := range flagDefs {
		names[i] = string(f.name)
	}
	return names
}

// SupportedOperators returns the SCMP_CMP_* names Compile accepts.
func SupportedOperators() []string {
	names := make([]string, len(opNames))
	for i, o := range opNames {
		names[i] = string(o.name)
	}
	return names
}

// actionValue compiles an action name; errno is its errnoRet (nil: EPERM), named field in errors.
func actionValue(name specs.LinuxSeccompAction, errno *uint, field string) (uint32, error) {
	for _, a := range actionDefs {
		if a.name != name {
			continue
		}
		if !a.takesErrno {
			if errno != nil {
				return 0, fmt.Errorf("%w: %s is only valid with %s and %s",
					ErrInvalidErrnoRet, field, specs.ActErrno, specs.ActTrace)
			}
			return a.ret, nil
		}
		data := uint(unix.EPERM)
		if errno != nil {
			data = *errno
		}
		if data > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("%w: %s %d out of range (max %d)",
				ErrInvalidErrnoRet, field, data, unix.SECCOMP_RET_DATA)
		}
		return a.ret | uint32(data), nil
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownAction, name)
}
