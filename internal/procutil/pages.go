package procutil

import (
	"bytes"
	"debug/elf"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// StartupPages are the read-only mappings of this process's executable: its
// code and constant data. Go's start-up touches most of them (package
// initialisers are spread over the whole binary, and the kernel maps up to
// 64 KiB around every fault), while a long-lived idle process (boot once
// the container runs, the gofer once it serves) needs a small part.
type StartupPages [][2]uintptr

// FindStartupPages reads the executable's read-only mappings from
// /proc/self/maps.
// Precondition: /proc is mounted (before the gofer enters its jail).
func FindStartupPages() StartupPages {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil
	}
	var out StartupPages
	exe := ""
	// In a position-independent executable the loader relocates some
	// read-only data (RELRO) before protecting it: those r--p pages were
	// written, and dropping them would lose the relocations. Only code is
	// clean there.
	constOK := !positionIndependent()
	for _, line := range bytes.Split(maps, []byte{'\n'}) {
		// addr perms offset dev inode path
		f := bytes.Fields(line)
		if len(f) < 6 || string(f[4]) == "0" {
			continue
		}
		if exe == "" {
			exe = string(f[5]) // the executable is mapped first
		}
		perms := f[1]
		if string(f[5]) != exe || len(perms) < 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue // only private read-only (r-x, r--) mappings: never data
		}
		if perms[2] != 'x' && !constOK {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte{'-'})
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 == nil && err2 == nil && end > start {
			out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
		}
	}
	return out
}

// positionIndependent reports whether the running executable is an ELF of
// type ET_DYN (PIE), or cannot be read (then it is taken for one).
func positionIndependent() bool {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return true
	}
	defer f.Close()
	var hdr [18]byte // e_ident[16], e_type (little-endian on the arches moat builds for)
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[:4]) != "\x7fELF" {
		return true
	}
	return hdr[16] != byte(elf.ET_EXEC) || hdr[17] != 0
}

// IdleAfter is how long a process serves before it lets its start-up pages
// go: a short-lived container ends first, so its start and teardown never
// fault them back in.
const IdleAfter = time.Second

// DropAfter drops the pages after d, in the background.
func (p StartupPages) DropAfter(d time.Duration) {
	if len(p) > 0 {
		time.AfterFunc(d, p.Drop)
	}
}

// Drop unmaps the pages (MADV_DONTNEED): they are clean, read-only
// file pages, shared through the page cache and faulted back on their next
// use, so nothing changes but the resident set. Errors are ignored: this is
// an optimisation.
func (p StartupPages) Drop() {
	for _, r := range p {
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, r[0], r[1]-r[0], unix.MADV_DONTNEED)
	}
}
