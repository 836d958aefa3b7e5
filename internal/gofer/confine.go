package gofer

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/gofer/fsys"
	"github.com/moat-sandbox/moat/internal/seccomp"
)

// fileServerCaps are all the serving gofer keeps. It acts on files for
// callers the kernel already checked (the mounts use default_permissions),
// so it needs to override permission bits and ownership, and to hand files
// to their owners:
//
//	CAP_CHOWN        create files owned by the caller, chown
//	CAP_DAC_OVERRIDE read, write and search regardless of mode bits
//	CAP_FOWNER       chmod, utimes, xattrs on files it does not own
//	CAP_FSETID       keep the setgid group of new files in setgid dirs
//
// Not kept: CAP_DAC_READ_SEARCH (it allows open_by_handle_at, the classic
// container escape), CAP_MKNOD (no device nodes through the gofer),
// CAP_SYS_ADMIN except for FUSE passthrough as real root, which needs it in
// the initial user namespace for each backing file.
var fileServerCaps = []uintptr{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID}

// servedTree is what the serving phase needs of a tree (passed as JSON).
type servedTree struct {
	Destination string     `json:"destination"`
	ReadOnly    bool       `json:"readOnly,omitempty"`
	Cache       fsys.Cache `json:"cache"`
	Passthrough bool       `json:"passthrough,omitempty"`
}

// reexecConfined executes the sealed copy of moat again as the serving
// phase, with the bounding set cut to the file-server capabilities and
// no_new_privs set: execve gives every thread of the new process exactly
// those, which no in-process change to a running Go program's many threads
// could guarantee as simply. The jail's trees and the io sockets are
// inherited. It returns only on failure.
// Precondition: the caller is in the jail (there is no path to execute:
// the copy is executed through its descriptor).
func reexecConfined(a Args, trees []*tree, dirs []*os.File, passthrough bool) error {
	var served []servedTree
	var treeFDs []string
	for i, t := range trees {
		served = append(served, servedTree{Destination: t.mount.Destination, ReadOnly: t.mount.ReadOnly,
			Cache: t.cache, Passthrough: passthrough})
		if err := keepOpen(int(dirs[i].Fd())); err != nil {
			return err
		}
		treeFDs = append(treeFDs, strconv.Itoa(int(dirs[i].Fd())))
	}
	for _, fd := range append(append([]int{}, a.IoFDs...), a.LogFD) {
		if fd >= 0 {
			if err := keepOpen(fd); err != nil {
				return err
			}
		}
	}
	trees64, err := json.Marshal(served)
	if err != nil {
		return err
	}
	args := append([]string{"moat"}, a.GlobalFlags...)
	args = append(args, "gofer", "--serve", "--bundle="+a.Bundle, "--exe-fd="+strconv.Itoa(a.ExeFD), "--tree-fds="+strings.Join(treeFDs, ","),
		"--io-fds="+joinInts(a.IoFDs), "--trees="+string(trees64))
	if a.LogFD >= 0 {
		args = append(args, "--log-fd="+strconv.Itoa(a.LogFD))
	}
	if err := checkStatic(a.ExeFD); err != nil {
		return err
	}
	if err := setRlimitNofile(); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	unix.Umask(0)
	keep := fileServerCaps
	if passthrough {
		keep = append(keep, unix.CAP_SYS_ADMIN)
	}
	// Capabilities and no_new_privs are per thread: change this one and
	// execute from it.
	runtime.LockOSThread()
	if err := cutBounding(keep); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return execFD(a.ExeFD, args)
}

// checkStatic refuses a dynamically linked moat: the serving phase is
// executed inside the jail, where there is no dynamic loader.
func checkStatic(exeFD int) error {
	// Read through the raw descriptor: an *os.File would close it when
	// collected, before the execveat that needs it.
	f, err := elf.NewFile(io.NewSectionReader(fdReader(exeFD), 0, 1<<40))
	if err != nil {
		return nil // not ours to judge: execveat will say
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("moat is dynamically linked (built with cgo); the gofer needs a static binary: build with CGO_ENABLED=0 (make build)")
		}
	}
	return nil
}

// fdReader reads a descriptor at offsets without owning it.
type fdReader int

func (r fdReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(r), p, off)
	if err == nil && n < len(p) {
		return n, io.EOF
	}
	return n, err
}

func keepOpen(fd int) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("keep descriptor %d across the re-exec: %w", fd, err)
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// cutBounding drops every capability outside keep from this thread's
// bounding set; execve as root then grants exactly the rest.
func cutBounding(keep []uintptr) error {
	var mask uint64
	for _, c := range keep {
		mask |= 1 << c
	}
	for c := uintptr(0); c <= 63; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

// execFD executes the file open at fd (execveat with AT_EMPTY_PATH).
func execFD(fd int, args []string) error {
	argv, err := syscall.SlicePtrFromStrings(args)
	if err != nil {
		return err
	}
	envv, err := syscall.SlicePtrFromStrings(os.Environ())
	if err != nil {
		return err
	}
	empty := []byte{0}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
	return fmt.Errorf("re-execute the gofer confined: %w", errno)
}

// checkConfined verifies, in the serving phase, that no capability beyond
// the file-server set came through the re-exec.
func checkConfined() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	allowed := uint64(0)
	for _, c := range append(fileServerCaps, unix.CAP_SYS_ADMIN) {
		allowed |= 1 << c
	}
	have := uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32
	if have&^allowed != 0 {
		return fmt.Errorf("serving gofer still has capabilities %#x", have&^allowed)
	}
	if v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err != nil || v != 1 {
		return fmt.Errorf("serving gofer lacks no_new_privs")
	}
	return nil
}

// setRlimitNofile lets the server hold one descriptor per live node.
func setRlimitNofile() error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur = rl.Max
	return unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
}

// installFilter installs the seccomp allowlist on every thread.
func installFilter() error {
	f, err := seccomp.Compile(allowlist())
	if err != nil {
		return fmt.Errorf("gofer seccomp filter: %w", err)
	}
	if err := f.InstallAllThreads(); err != nil {
		return fmt.Errorf("gofer seccomp filter: %w", err)
	}
	return nil
}

// allowlist is every syscall the gofer makes once confined (the Go runtime
// and the file server); anything else kills it.
func allowlist() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActKillProcess,
		Syscalls:      []specs.LinuxSyscall{{Names: goferSyscalls, Action: specs.ActAllow}},
	}
}
