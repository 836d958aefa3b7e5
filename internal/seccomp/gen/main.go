// Command gen writes the syscall tables of package seccomp (zsyscalls.go).
//
// It reads golang.org/x/sys/unix zsysnum_linux_{amd64,386,arm64,arm}.go from the module cache
// (the version go.mod selects), turns each SYS_FOO constant into the libseccomp-style name "foo",
// and derives the x32 table from the amd64 one: x32 uses the x86_64 numbers of the "common"
// syscalls, its own numbers 512-547 for the syscalls that have an x32 compat entry point, and
// lacks the "64"-only ones (arch/x86/entry/syscalls/syscall_64.tbl); every x32 number carries
// __X32_SYSCALL_BIT, as libseccomp reports them.
//
// Run it from package seccomp: go generate ./internal/seccomp/
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const x32Bit = 0x40000000

// x32Compat lists the syscalls that are "64"-only in syscall_64.tbl and have an x32 entry
// point in the legacy 512-547 range instead.
var x32Compat = map[string]uint32{
	"rt_sigaction": 512, "rt_sigreturn": 513, "ioctl": 514, "readv": 515, "writev": 516,
	"recvfrom": 517, "sendmsg": 518, "recvmsg": 519, "execve": 520, "ptrace": 521,
	"rt_sigpending": 522, "rt_sigtimedwait": 523, "rt_sigqueueinfo": 524, "sigaltstack": 525,
	"timer_create": 526, "mq_notify": 527, "kexec_load": 528, "waitid": 529,
	"set_robust_list": 530, "get_robust_list": 531, "vmsplice": 532, "move_pages": 533,
	"preadv": 534, "pwritev": 535, "rt_tgsigqueueinfo": 536, "recvmmsg": 537, "sendmmsg": 538,
	"process_vm_readv": 539, "process_vm_writev": 540, "setsockopt": 541, "getsockopt": 542,
	"io_setup": 543, "io_submit": 544, "execveat": 545, "preadv2": 546, "pwritev2": 547,
}

// x64Only lists the "64"-only syscalls that x32 does not have at all.
var x64Only = map[string]bool{
	"uselib": true, "_sysctl": true, "create_module": true, "get_kernel_syms": true,
	"query_module": true, "nfsservctl": true, "set_thread_area": true, "get_thread_area": true,
	"epoll_ctl_old": true, "epoll_wait_old": true, "vserver": true,
}

// notSyscalls are SYS_ constants that do not name a syscall.
var notSyscalls = map[string]bool{"syscall_mask": true, "arch_specific_syscall": true}

// armExtra are the ARM private syscalls (__ARM_NR_BASE 0x0f0000 + n) and the kernel-table
// name of arm_sync_file_range; x/sys does not list them.
var armExtra = map[string]uint32{
	"breakpoint": 0x0f0001, "cacheflush": 0x0f0002, "usr26": 0x0f0003, "usr32": 0x0f0004,
	"set_tls": 0x0f0005, "get_tls": 0x0f0006, "sync_file_range2": 341,
}

type table struct {
	goName  string
	arch    string
	entries map[string]uint32
	maxNr   uint32 // highest regular number (without ARM private / x32 legacy ones)
}

func main() {
	out := flag.String("o", "zsyscalls.go", "output file")
	flag.Parse()
	dir, err := sysDir()
	if err != nil {
		log.Fatal(err)
	}
	amd64 := mustParse(dir, "amd64")
	tables := []table{
		{goName: "tableX86_64", arch: "SCMP_ARCH_X86_64", entries: amd64},
		{goName: "tableX86", arch: "SCMP_ARCH_X86", entries: mustParse(dir, "386")},
		{goName: "tableX32", arch: "SCMP_ARCH_X32", entries: deriveX32(amd64)},
		{goName: "tableAARCH64", arch: "SCMP_ARCH_AARCH64", entries: mustParse(dir, "arm64")},
		{goName: "tableARM", arch: "SCMP_ARCH_ARM", entries: withARMExtra(mustParse(dir, "arm"))},
	}
	for i := range tables {
		tables[i].maxNr = regularMax(tables[i].entries)
	}
	src, err := format.Source(render(tables, filepath.Base(dir)))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// sysDir returns the module cache directory of the golang.org/x/sys version go.mod selects.
func sysDir() (string, error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		return "", fmt.Errorf("go list golang.org/x/sys: %w", err)
	}
	dir := strings.TrimSpace(string(b))
	if dir == "" {
		return "", fmt.Errorf("golang.org/x/sys is not in the module cache (run go mod download)")
	}
	return dir, nil
}

var sysLine = regexp.MustCompile(`^\s+SYS_(\w+)\s*=\s*(\d+)\s*$`)

func mustParse(dir, goarch string) map[string]uint32 {
	path := filepath.Join(dir, "unix", "zsysnum_linux_"+goarch+".go")
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	m := map[string]uint32{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sub := sysLine.FindStringSubmatch(sc.Text())
		if sub == nil {
			continue
		}
		name := strings.ToLower(sub[1])
		if notSyscalls[name] {
			continue
		}
		n, err := strconv.ParseUint(sub[2], 10, 32)
		if err != nil {
			log.Fatalf("%s: %v", path, err)
		}
		m[name] = uint32(n)
	}
	if len(m) < 250 {
		log.Fatalf("%s: only %d syscalls found", path, len(m))
	}
	return m
}

func deriveX32(amd64 map[string]uint32) map[string]uint32 {
	m := map[string]uint32{}
	for name, nr := range amd64 {
		switch {
		case x64Only[name]:
		case x32Compat[name] != 0:
			m[name] = x32Bit | x32Compat[name]
		default:
			m[name] = x32Bit | nr
		}
	}
	for name := range x32Compat {
		if _, ok := m[name]; !ok {
			log.Fatalf("x32: %s missing from the amd64 table", name)
		}
	}
	return m
}

func withARMExtra(m map[string]uint32) map[string]uint32 {
	for name, nr := range armExtra {
		m[name] = nr
	}
	return m
}

// regularMax is the highest number outside the ARM private and x32 legacy ranges.
func regularMax(m map[string]uint32) uint32 {
	var hi uint32
	for _, nr := range m {
		n := nr &^ x32Bit
		if n >= 0x0f0000 || (nr&x32Bit != 0 && n >= 512 && n <= 547) {
			continue
		}
		hi = max(hi, nr)
	}
	return hi
}

// number spells a syscall number: x32 ones as x32Bit | n, ARM private ones in hex.
func number(nr uint32) string {
	switch {
	case nr&x32Bit != 0:
		return fmt.Sprintf("x32Bit | %d", nr&^x32Bit)
	case nr >= 0x0f0000:
		return fmt.Sprintf("%#x", nr)
	}
	return strconv.FormatUint(uint64(nr), 10)
}

func render(tables []table, sysVersion string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by go run ./gen from %s; DO NOT EDIT.\n\n", sysVersion)
	b.WriteString("package seccomp\n\n")
	for _, t := range tables {
		names := make([]string, 0, len(t.entries))
		for name := range t.entries {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(&b, "// %s maps %s syscall names to numbers, sorted by name.\n", t.goName, t.arch)
		fmt.Fprintf(&b, "var %s = sysTable{\n\tmaxNr: %s,\n\tentries: []sysEntry{\n", t.goName, number(t.maxNr))
		for _, name := range names {
			fmt.Fprintf(&b, "\t\t{%q, %s},\n", name, number(t.entries[name]))
		}
		b.WriteString("\t},\n}\n\n")
	}
	return b.Bytes()
}
