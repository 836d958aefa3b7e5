package seccomp

import (
	"golang.org/x/sys/unix"
)

// emitCond emits one argument comparison: goto pass when it holds, else goto fail.
// Comparisons are unsigned. 64-bit ABIs compare the high halves first, then the low ones;
// 32-bit ABIs only have the low half (values are truncated to 32 bits, as libseccomp does).
func (c *compiler) emitCond(a *archInfo, cd cond, pass, fail label) label {
	switch cd.op {
	case opNE:
		return c.emitCmp(a, opEQ, cd, fail, pass)
	case opLT:
		return c.emitCmp(a, opGE, cd, fail, pass)
	case opLE:
		return c.emitCmp(a, opGT, cd, fail, pass)
	}
	return c.emitCmp(a, cd.op, cd, pass, fail)
}

// emitCmp emits an EQ, GT, GE or MASKED_EQ comparison.
func (c *compiler) emitCmp(a *archInfo, o op, cd cond, pass, fail label) label {
	loOff := uint32(offArgs + 8*cd.arg)
	lo := c.emitHalf(o, loOff, uint32(cd.value), uint32(cd.valueTwo), pass, fail)
	if a.bits32 {
		return lo
	}
	return c.emitHigh(o, loOff+4, uint32(cd.value>>32), uint32(cd.valueTwo>>32), lo, pass, fail)
}

// emitHalf emits the low-half comparison: load the word at off and compare it with k (for
// opMaskedEQ: word & k == k2).
func (c *compiler) emitHalf(o op, off, k, k2 uint32, pass, fail label) label {
	b := c.b
	switch o {
	case opEQ:
		b.jump(unix.BPF_JEQ, k, pass, fail)
	case opGT:
		b.jump(unix.BPF_JGT, k, pass, fail)
	case opGE:
		b.jump(unix.BPF_JGE, k, pass, fail)
	case opMaskedEQ:
		if k == 0 { // word & 0 == k2 does not depend on the word
			return constJump(k2 == 0, pass, fail)
		}
		b.jump(unix.BPF_JEQ, k2, pass, fail)
		if k != 0xffffffff {
			b.and(k)
		}
	}
	return b.load(off)
}

// emitHigh emits the high-half comparison in front of lo, the low-half one: when the high
// halves decide, go to pass or fail; when they are equal, go on to lo.
func (c *compiler) emitHigh(o op, off, k, k2 uint32, lo, pass, fail label) label {
	b := c.b
	switch o {
	case opEQ:
		b.jump(unix.BPF_JEQ, k, lo, fail)
	case opGT, opGE:
		equal := b.jump(unix.BPF_JEQ, k, lo, fail)
		b.jump(unix.BPF_JGT, k, pass, equal)
	case opMaskedEQ:
		if k == 0 {
			return constJump(k2 == 0, lo, fail)
		}
		b.jump(unix.BPF_JEQ, k2, lo, fail)
		if k != 0xffffffff {
			b.and(k)
		}
	}
	return b.load(off)
}

func constJump(cond bool, pass, fail label) label {
	if cond {
		return pass
	}
	return fail
}
