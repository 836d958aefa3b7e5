package seccomp

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// seccompData is struct seccomp_data as the kernel hands it to a filter.
type seccompData struct {
	nr   uint32
	arch uint32
	ip   uint64
	args [6]uint64
}

// bytes lays d out as the kernel does on a little-endian machine.
func (d seccompData) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	binary.LittleEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// checkProgram applies the kernel's static checks for seccomp programs (sk_chk_filter and
// seccomp_check_filter): length, known opcodes, aligned in-bounds loads, jumps in range, and a
// RET at the end.
func checkProgram(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("length %d", len(prog))
	}
	for pc, ins := range prog {
		switch ins.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if ins.K%4 != 0 || ins.K >= 64 {
				return fmt.Errorf("pc %d: load at offset %d", pc, ins.K)
			}
		case unix.BPF_JMP | unix.BPF_JA:
			if uint64(pc)+1+uint64(ins.K) >= uint64(len(prog)) {
				return fmt.Errorf("pc %d: ja out of range", pc)
			}
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if pc+1+int(max(ins.Jt, ins.Jf)) >= len(prog) {
				return fmt.Errorf("pc %d: conditional jump out of range", pc)
			}
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, unix.BPF_RET | unix.BPF_K,
			unix.BPF_RET | unix.BPF_A, unix.BPF_LD | unix.BPF_IMM, unix.BPF_MISC | unix.BPF_TAX,
			unix.BPF_MISC | unix.BPF_TXA:
		default:
			return fmt.Errorf("pc %d: unexpected opcode %#x", pc, ins.Code)
		}
	}
	if last := prog[len(prog)-1].Code; last&0x07 != unix.BPF_RET {
		return fmt.Errorf("last instruction %#x is not a return", last)
	}
	return nil
}

// runBPF interprets a seccomp cBPF program on d and returns its SECCOMP_RET_* value.
func runBPF(prog []unix.SockFilter, d seccompData) (uint32, error) {
	if err := checkProgram(prog); err != nil {
		return 0, err
	}
	data := d.bytes()
	var a, x uint32
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		switch ins.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[ins.K:])
		case unix.BPF_LD | unix.BPF_IMM:
			a = ins.K
		case unix.BPF_MISC | unix.BPF_TAX:
			x = a
		case unix.BPF_MISC | unix.BPF_TXA:
			a = x
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= ins.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(ins.K)
		case unix.BPF_RET | unix.BPF_K:
			return ins.K, nil
		case unix.BPF_RET | unix.BPF_A:
			return a, nil
		default: // conditional jumps
			if condHolds(ins.Code, a, ins.K) {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

func condHolds(code uint16, a, k uint32) bool {
	switch code &^ (unix.BPF_JMP | unix.BPF_K) {
	case unix.BPF_JEQ:
		return a == k
	case unix.BPF_JGT:
		return a > k
	case unix.BPF_JGE:
		return a >= k
	default: // BPF_JSET
		return a&k != 0
	}
}

// disasm renders a program for failure messages.
func disasm(prog []unix.SockFilter) string {
	var sb strings.Builder
	for pc, ins := range prog {
		fmt.Fprintf(&sb, "%4d: code=%#04x jt=%3d jf=%3d k=%#x\n", pc, ins.Code, ins.Jt, ins.Jf, ins.K)
	}
	return sb.String()
}

// TestBuilderTrampolines jumps over more than 255 instructions on both branches.
func TestBuilderTrampolines(t *testing.T) {
	for _, gap := range []int{0, 1, 254, 255, 256, 300, 600} {
		b := newBuilder()
		far := b.emit(unix.BPF_RET|unix.BPF_K, 0, 0, 111)
		for i := range gap {
			b.emit(unix.BPF_RET|unix.BPF_K, 0, 0, uint32(1000+i))
		}
		farther := b.emit(unix.BPF_RET|unix.BPF_K, 0, 0, 222)
		for i := range gap {
			b.emit(unix.BPF_RET|unix.BPF_K, 0, 0, uint32(2000+i))
		}
		b.jump(unix.BPF_JEQ, 7, farther, far)
		b.load(offNr)
		prog := b.program()
		for nr, want := range map[uint32]uint32{7: 222, 8: 111} {
			got, err := runBPF(prog, seccompData{nr: nr})
			if err != nil || got != want {
				t.Errorf("gap %d, nr %d: got %d, %v, want %d\n%s", gap, nr, got, err, want, disasm(prog))
			}
		}
	}
}
