package seccomp

import (
	"golang.org/x/sys/unix"
)

// maxInsns is BPF_MAXINSNS: the kernel rejects longer programs.
const maxInsns = 4096

// maxCondJump is the reach of a cBPF conditional jump (an 8-bit forward offset).
const maxCondJump = 255

// Offsets into struct seccomp_data (little endian): nr u32, arch u32, ip u64, args [6]u64.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// label names an emitted instruction by its position counted from the end of the program
// (1 = the last instruction). The builder emits backwards, so every jump target already
// exists when the jump is emitted and its distance is known.
type label int

// builder assembles a cBPF program from its last instruction to its first. Conditional jumps
// whose targets are out of reach get JA trampolines inserted right after them, so callers
// never think about jump ranges.
type builder struct {
	rev  []unix.SockFilter // instructions in reverse order
	rets map[uint32]label  // last emitted RET per value, reused while within reach
}

func newBuilder() *builder { return &builder{rets: map[uint32]label{}} }

// next is the label of the instruction that will follow the next one emitted.
func (b *builder) next() label { return label(len(b.rev)) }

// dist is the jump offset from the next emitted instruction to target.
func (b *builder) dist(target label) int { return len(b.rev) - int(target) }

func (b *builder) emit(code uint16, jt, jf uint8, k uint32) label {
	b.rev = append(b.rev, unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k})
	return b.next()
}

// ret emits (or reuses a reachable) RET k.
func (b *builder) ret(k uint32) label {
	if l, ok := b.rets[k]; ok && b.dist(l) <= maxCondJump {
		return l
	}
	l := b.emit(unix.BPF_RET|unix.BPF_K, 0, 0, k)
	b.rets[k] = l
	return l
}

// load emits A = 32-bit word at off in seccomp_data.
func (b *builder) load(off uint32) label {
	return b.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0, 0, off)
}

// and emits A &= k.
func (b *builder) and(k uint32) label {
	return b.emit(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, 0, 0, k)
}

// ja emits an unconditional jump to target.
func (b *builder) ja(target label) label {
	if b.dist(target) == 0 {
		return target
	}
	return b.emit(unix.BPF_JMP|unix.BPF_JA, 0, 0, uint32(b.dist(target)))
}

// jump emits "if A <op> k goto jt else goto jf", op one of BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET.
func (b *builder) jump(op uint16, k uint32, jt, jf label) label {
	if jt == jf {
		return b.ja(jt)
	}
	for b.dist(jt) > maxCondJump || b.dist(jf) > maxCondJump {
		if b.dist(jf) > maxCondJump {
			jf = b.ja(jf)
			continue
		}
		jt = b.ja(jt)
	}
	return b.emit(unix.BPF_JMP|op|unix.BPF_K, uint8(b.dist(jt)), uint8(b.dist(jf)), k)
}

// program returns the instructions in execution order.
func (b *builder) program() []unix.SockFilter {
	p := make([]unix.SockFilter, len(b.rev))
	for i, ins := range b.rev {
		p[len(b.rev)-1-i] = ins
	}
	return p
}
