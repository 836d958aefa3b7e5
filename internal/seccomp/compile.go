package seccomp

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// leafSize is the most syscall numbers a search-tree leaf tests linearly.
const leafSize = 4

// retENOSYS is what syscalls unknown to our tables return when the default action denies.
const retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

// compiler turns a validated profile into a program. It emits backwards (see builder): every
// emit* method returns the label of the first instruction of what it emitted.
type compiler struct {
	prof    *profile
	b       *builder
	stub    bool // numbers above the table return ENOSYS instead of the default action
	skipped []SkippedSyscall
	used    map[uint32]bool // actions (SECCOMP_RET_ACTION_FULL part) the program returns
}

func newCompiler(prof *profile) *compiler {
	def := prof.defaultAction
	permissive := def == unix.SECCOMP_RET_ALLOW || def == unix.SECCOMP_RET_LOG
	return &compiler{
		prof: prof,
		b:    newBuilder(),
		stub: !permissive && def != retENOSYS,
		used: map[uint32]bool{},
	}
}

// ret emits a return of action k and records the action as used.
func (c *compiler) ret(k uint32) label {
	c.used[k&unix.SECCOMP_RET_ACTION_FULL] = true
	return c.b.ret(k)
}

func (c *compiler) actions() []uint32 {
	out := make([]uint32, 0, len(c.used))
	for a := range c.used {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// auditGroup is the ABIs that share one seccomp_data.arch value.
type auditGroup struct {
	audit uint32
	main  *archInfo // nil when the filter does not accept the non-x32 ABI
	x32   *archInfo // only for AUDIT_ARCH_X86_64
}

func groupArches(arches []*archInfo) []*auditGroup {
	var groups []*auditGroup
	byAudit := map[uint32]*auditGroup{}
	for _, a := range arches {
		g := byAudit[a.audit]
		if g == nil {
			g = &auditGroup{audit: a.audit}
			byAudit[a.audit] = g
			groups = append(groups, g)
		}
		if a.x32 {
			g.x32 = a
		} else {
			g.main = a
		}
	}
	return groups
}

// program emits the whole filter: the arch dispatch, then one block per audit arch.
func (c *compiler) program() ([]unix.SockFilter, error) {
	groups := groupArches(c.prof.arches)
	entries := make([]label, len(groups))
	for i := len(groups) - 1; i >= 0; i-- {
		entries[i] = c.emitGroup(groups[i])
	}
	next := c.ret(unix.SECCOMP_RET_KILL_PROCESS)
	for i := len(groups) - 1; i >= 0; i-- {
		next = c.b.jump(unix.BPF_JEQ, groups[i].audit, entries[i], next)
	}
	c.b.load(offArch)
	prog := c.b.program()
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("seccomp: %w: %d instructions (max %d)", ErrProgramTooLong, len(prog), maxInsns)
	}
	return prog, nil
}

// emitGroup emits A = nr and the rules of the group's ABIs. On AUDIT_ARCH_X86_64 the x32 bit
// tells x32 from x86_64; an ABI the filter does not accept is killed like a foreign arch.
func (c *compiler) emitGroup(g *auditGroup) label {
	var body label
	if g.audit == unix.AUDIT_ARCH_X86_64 {
		x32 := c.emitABIOrKill(g.x32)
		x64 := c.emitABIOrKill(g.main)
		body = c.b.jump(unix.BPF_JGE, x32Bit, x32, x64)
	} else {
		body = c.emitABIOrKill(g.main)
	}
	c.b.ja(body) // no-op when body was emitted last
	return c.b.load(offNr)
}

func (c *compiler) emitABIOrKill(a *archInfo) label {
	if a == nil {
		return c.ret(unix.SECCOMP_RET_KILL_PROCESS)
	}
	return c.emitABI(a)
}

// emitABI emits the syscall dispatch of one ABI. Precondition: A holds seccomp_data.nr.
func (c *compiler) emitABI(a *archInfo) label {
	rules := c.resolve(a)
	nrs := make([]uint32, 0, len(rules))
	for nr := range rules {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	miss := c.emitMiss(a)
	return c.emitTree(a, nrs, rules, miss)
}

// emitMiss emits what a syscall without rules gets: the default action, or ENOSYS when the
// stub applies and the number is above the ABI's table (extraLo..extraHi excepted).
// Precondition: A holds seccomp_data.nr.
func (c *compiler) emitMiss(a *archInfo) label {
	def := c.ret(c.prof.defaultAction)
	if !c.stub {
		return def
	}
	enosys := c.ret(retENOSYS)
	above := enosys
	if a.extraHi != 0 {
		known := c.b.jump(unix.BPF_JGE, a.extraLo, def, enosys)
		above = c.b.jump(unix.BPF_JGT, a.extraHi, enosys, known)
	}
	return c.b.jump(unix.BPF_JGT, a.table.maxNr, above, def)
}

// emitTree emits a binary search over nrs (sorted) that jumps to each number's rules, and to
// miss for any other number. Precondition: A holds seccomp_data.nr.
func (c *compiler) emitTree(a *archInfo, nrs []uint32, rules map[uint32][]*rule, miss label) label {
	if len(nrs) > leafSize {
		mid := len(nrs) / 2
		right := c.emitTree(a, nrs[mid:], rules, miss)
		left := c.emitTree(a, nrs[:mid], rules, miss)
		return c.b.jump(unix.BPF_JGE, nrs[mid], right, left)
	}
	blocks := make([]label, len(nrs))
	for i := len(nrs) - 1; i >= 0; i-- {
		blocks[i] = c.emitRules(a, rules[nrs[i]])
	}
	next := miss
	for i := len(nrs) - 1; i >= 0; i-- {
		next = c.b.jump(unix.BPF_JEQ, nrs[i], blocks[i], next)
	}
	return next
}
