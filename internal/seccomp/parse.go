package seccomp

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxArgs is the number of syscall arguments in seccomp_data.
const maxArgs = 6

// parseProfile validates p for a process running as goarch. Every error names the offending
// field, e.g. `seccomp: syscalls[3]: unknown action "SCMP_ACT_FOO"`.
func parseProfile(p *specs.LinuxSeccomp, goarch string) (*profile, error) {
	if p == nil {
		return nil, errors.New("seccomp: no profile")
	}
	prof := &profile{}
	var err error
	if prof.defaultAction, err = parseDefault(p); err != nil {
		return nil, fmt.Errorf("seccomp: defaultAction: %w", err)
	}
	if prof.arches, err = parseArches(p.Architectures, goarch); err != nil {
		return nil, err
	}
	for i, sc := range p.Syscalls {
		r, err := parseRule(i, sc)
		if err != nil {
			return nil, err
		}
		prof.notify = prof.notify || sc.Action == specs.ActNotify
		prof.rules = append(prof.rules, r)
	}
	if prof.flags, err = parseFlags(p.Flags, prof.notify); err != nil {
		return nil, err
	}
	return prof, nil
}

func parseDefault(p *specs.LinuxSeccomp) (uint32, error) {
	if p.DefaultAction == specs.ActNotify {
		return 0, ErrNotifyDefault
	}
	return actionValue(p.DefaultAction, p.DefaultErrnoRet, "defaultErrnoRet")
}

// parseArches returns the native architecture followed by the listed ones, without duplicates.
func parseArches(names []specs.Arch, goarch string) ([]*archInfo, error) {
	native := archByName(nativeArchName(goarch))
	if native == nil {
		return nil, fmt.Errorf("seccomp: native architecture: %w %q", ErrUnsupportedArch, goarch)
	}
	out := []*archInfo{native}
	for i, name := range names {
		a := archByName(string(name))
		if a == nil {
			return nil, fmt.Errorf("seccomp: architectures[%d]: %w %q", i, ErrUnsupportedArch, name)
		}
		if !containsArch(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func containsArch(list []*archInfo, a *archInfo) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// parseFlags returns the seccomp(2) flag bits. WAIT_KILLABLE_RECV is kept only with a
// listener: the kernel rejects it without SECCOMP_FILTER_FLAG_NEW_LISTENER.
func parseFlags(names []specs.LinuxSeccompFlag, notify bool) (uint, error) {
	var bits uint
	for i, name := range names {
		found := false
		for _, f := range flagDefs {
			if f.name == name {
				bits |= f.bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("seccomp: flags[%d]: %w %q", i, ErrUnknownFlag, name)
		}
	}
	if !notify {
		bits &^= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	return bits, nil
}

func parseRule(i int, sc specs.LinuxSyscall) (rule, error) {
	r := rule{index: i, names: sc.Names}
	var err error
	if r.action, err = actionValue(sc.Action, sc.ErrnoRet, "errnoRet"); err != nil {
		return r, fmt.Errorf("seccomp: syscalls[%d]: %w", i, err)
	}
	if len(sc.Names) == 0 {
		return r, fmt.Errorf("seccomp: syscalls[%d]: %w: names is empty", i, ErrInvalidSyscall)
	}
	for j, name := range sc.Names {
		if name == "" {
			return r, fmt.Errorf("seccomp: syscalls[%d].names[%d]: %w: empty name", i, j, ErrInvalidSyscall)
		}
	}
	for j, a := range sc.Args {
		c, err := parseArg(a)
		if err != nil {
			return r, fmt.Errorf("seccomp: syscalls[%d].args[%d]: %w", i, j, err)
		}
		r.conds = append(r.conds, c)
	}
	return r, nil
}

func parseArg(a specs.LinuxSeccompArg) (cond, error) {
	if a.Index >= maxArgs {
		return cond{}, fmt.Errorf("%w: index %d (max %d)", ErrInvalidArgIndex, a.Index, maxArgs-1)
	}
	for _, o := range opNames {
		if o.name == a.Op {
			return cond{arg: a.Index, op: o.op, value: a.Value, valueTwo: a.ValueTwo}, nil
		}
	}
	return cond{}, fmt.Errorf("%w %q", ErrUnknownOperator, a.Op)
}
