package seccomp

import (
	"sort"

	"golang.org/x/sys/unix"
)

// precedence orders actions as the kernel does when filters disagree: a lower value is more
// restrictive (KILL_PROCESS < KILL_THREAD < TRAP < ERRNO < USER_NOTIF < TRACE < LOG < ALLOW).
func precedence(ret uint32) int32 {
	return int32(ret & unix.SECCOMP_RET_ACTION_FULL)
}

// resolve maps the ABI's syscall numbers to the rules that name them, most restrictive action
// first (profile order among equals), and records names the ABI does not know. Rules whose
// action is the default action are dropped (libseccomp refuses them, runc skips them), and so
// are rules after an unconditional one, which could never decide.
func (c *compiler) resolve(a *archInfo) map[uint32][]*rule {
	out := map[uint32][]*rule{}
	for i := range c.prof.rules {
		r := &c.prof.rules[i]
		for _, name := range r.names {
			nr, ok := a.table.lookup(name)
			if !ok {
				c.skip(a.name, name)
				continue
			}
			rs := out[nr]
			if r.action == c.prof.defaultAction || (len(rs) > 0 && rs[len(rs)-1] == r) {
				continue
			}
			out[nr] = append(rs, r)
		}
	}
	for nr, rs := range out {
		sort.SliceStable(rs, func(i, j int) bool {
			return precedence(rs[i].action) < precedence(rs[j].action)
		})
		for i, r := range rs {
			if len(r.conds) == 0 {
				rs = rs[:i+1]
				break
			}
		}
		out[nr] = rs
	}
	return out
}

func (c *compiler) skip(arch, name string) {
	for _, s := range c.skipped {
		if s.Arch == arch && s.Name == name {
			return
		}
	}
	c.skipped = append(c.skipped, SkippedSyscall{Arch: arch, Name: name})
}

// emitRules emits the rules of one syscall of ABI a, tried in order; the first that matches
// decides, none matching means the default action. Precondition: len(rs) > 0.
func (c *compiler) emitRules(a *archInfo, rs []*rule) label {
	var next label
	last := rs[len(rs)-1]
	if len(last.conds) == 0 {
		next = c.ret(last.action)
		rs = rs[:len(rs)-1]
	} else {
		next = c.ret(c.prof.defaultAction)
	}
	for i := len(rs) - 1; i >= 0; i-- {
		next = c.emitRule(a, rs[i], next)
	}
	return next
}

// emitRule emits "if every condition of r holds, return r's action, else goto fail".
func (c *compiler) emitRule(a *archInfo, r *rule, fail label) label {
	pass := c.ret(r.action)
	for i := len(r.conds) - 1; i >= 0; i-- {
		pass = c.emitCond(a, r.conds[i], pass, fail)
	}
	return pass
}
