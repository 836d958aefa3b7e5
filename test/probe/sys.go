package main

import (
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syscallDef describes a system call known by name to "probe syscall".
type syscallDef struct {
	nr       uintptr
	defaults []string // arguments used when none are given
}

var syscallTable = map[string]syscallDef{
	"getpid":            {unix.SYS_GETPID, nil},
	"getppid":           {unix.SYS_GETPPID, nil},
	"gettid":            {unix.SYS_GETTID, nil},
	"getuid":            {unix.SYS_GETUID, nil},
	"geteuid":           {unix.SYS_GETEUID, nil},
	"getgid":            {unix.SYS_GETGID, nil},
	"getegid":           {unix.SYS_GETEGID, nil},
	"uname":             {unix.SYS_UNAME, []string{"@buf"}},
	"getcwd":            {unix.SYS_GETCWD, []string{"@buf", "4096"}},
	"personality":       {unix.SYS_PERSONALITY, []string{"0xffffffff"}},
	"mkdirat":           {unix.SYS_MKDIRAT, nil},
	"mknodat":           {unix.SYS_MKNODAT, nil},
	"socket":            {unix.SYS_SOCKET, nil},
	"clone":             {unix.SYS_CLONE, nil},
	"clone3":            {unix.SYS_CLONE3, nil},
	"fork":              {unix.SYS_FORK, nil},
	"unshare":           {unix.SYS_UNSHARE, nil},
	"setns":             {unix.SYS_SETNS, nil},
	"chdir":             {unix.SYS_CHDIR, nil},
	"chroot":            {unix.SYS_CHROOT, nil},
	"pivot_root":        {unix.SYS_PIVOT_ROOT, nil},
	"mount":             {unix.SYS_MOUNT, nil},
	"umount2":           {unix.SYS_UMOUNT2, nil},
	"umask":             {unix.SYS_UMASK, nil},
	"setuid":            {unix.SYS_SETUID, nil},
	"setgid":            {unix.SYS_SETGID, nil},
	"setgroups":         {unix.SYS_SETGROUPS, nil},
	"kill":              {unix.SYS_KILL, nil},
	"ptrace":            {unix.SYS_PTRACE, nil},
	"process_vm_readv":  {unix.SYS_PROCESS_VM_READV, nil},
	"keyctl":            {unix.SYS_KEYCTL, nil},
	"add_key":           {unix.SYS_ADD_KEY, nil},
	"request_key":       {unix.SYS_REQUEST_KEY, nil},
	"acct":              {unix.SYS_ACCT, nil},
	"reboot":            {unix.SYS_REBOOT, nil},
	"swapon":            {unix.SYS_SWAPON, nil},
	"swapoff":           {unix.SYS_SWAPOFF, nil},
	"sethostname":       {unix.SYS_SETHOSTNAME, nil},
	"setdomainname":     {unix.SYS_SETDOMAINNAME, nil},
	"syslog":            {unix.SYS_SYSLOG, nil},
	"bpf":               {unix.SYS_BPF, nil},
	"perf_event_open":   {unix.SYS_PERF_EVENT_OPEN, nil},
	"userfaultfd":       {unix.SYS_USERFAULTFD, nil},
	"init_module":       {unix.SYS_INIT_MODULE, nil},
	"finit_module":      {unix.SYS_FINIT_MODULE, nil},
	"delete_module":     {unix.SYS_DELETE_MODULE, nil},
	"kexec_load":        {unix.SYS_KEXEC_LOAD, nil},
	"open_by_handle_at": {unix.SYS_OPEN_BY_HANDLE_AT, nil},
	"clock_settime":     {unix.SYS_CLOCK_SETTIME, nil},
	"settimeofday":      {unix.SYS_SETTIMEOFDAY, nil},
	"iopl":              {unix.SYS_IOPL, nil},
	"ioperm":            {unix.SYS_IOPERM, nil},
	"quotactl":          {unix.SYS_QUOTACTL, nil},
	"prctl":             {unix.SYS_PRCTL, nil},
	"setpriority":       {unix.SYS_SETPRIORITY, nil},
	"mlock":             {unix.SYS_MLOCK, nil},
	"io_uring_setup":    {unix.SYS_IO_URING_SETUP, nil},
	"vhangup":           {unix.SYS_VHANGUP, nil},
	"sync":              {unix.SYS_SYNC, nil},
}

// Calls that create processes must not run on a Go thread as given: the
// child would return into the Go runtime with a copy of (or, with CLONE_VM,
// the very same) stack. clone and fork go through forkSyscall instead.
var cloneNrs = map[uintptr]bool{unix.SYS_CLONE: true, unix.SYS_CLONE3: true, unix.SYS_FORK: true, unix.SYS_VFORK: true}

// syscallArg converts a command-line argument to a system call argument:
// integers (decimal, 0x hex, 0 octal, possibly negative), "@buf" (a zeroed
// 64 KiB scratch buffer), "str:TEXT" or any other non-numeric TEXT (a pointer
// to a NUL-terminated copy of TEXT). keep holds the memory alive.
func syscallArg(s string, keep *[][]byte) (v uintptr, isPtr bool) {
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return uintptr(n), false
	}
	if n, err := strconv.ParseUint(s, 0, 64); err == nil {
		return uintptr(n), false
	}
	var b []byte
	if s == "@buf" {
		b = make([]byte, 65536)
	} else {
		b = append([]byte(strings.TrimPrefix(s, "str:")), 0)
	}
	*keep = append(*keep, b)
	return uintptr(unsafe.Pointer(&b[0])), true
}

type syscallResult struct {
	Ret   int64  `json:"ret"`
	Errno int    `json:"errno"`
	Error string `json:"error"`
	Name  string `json:"name,omitempty"` // symbolic errno, e.g. EPERM
}

func cmdSyscall(args []string) error {
	name, rest := args[0], args[1:]
	def, ok := syscallTable[name]
	if !ok {
		n, err := strconv.ParseUint(name, 0, 32)
		if err != nil {
			return usagef("unknown system call %q (use a name from the table or a number)", name)
		}
		def.nr = uintptr(n)
	}
	if len(rest) == 0 {
		rest = def.defaults
	}
	var keep [][]byte
	var a [6]uintptr
	anyPtr := false
	for i, s := range rest {
		var isPtr bool
		a[i], isPtr = syscallArg(s, &keep)
		anyPtr = anyPtr || isPtr
	}

	var r uintptr
	var e syscall.Errno
	killed := ""
	switch {
	case def.nr == unix.SYS_CLONE:
		if a[0]&(unix.CLONE_VM|unix.CLONE_SETTLS) != 0 {
			return usagef("clone: CLONE_VM and CLONE_SETTLS are not supported (the child would run on our stack)")
		}
		// Only the flags are passed; the child exits at once.
		r, e, killed = forkSyscall(unix.SYS_CLONE, a[0], noSyscall, [6]uintptr{})
	case def.nr == unix.SYS_FORK:
		r, e, killed = forkSyscall(unix.SYS_FORK, 0, noSyscall, [6]uintptr{})
	case def.nr == unix.SYS_CLONE3 && !anyPtr:
		// Without a pointer to real memory clone3 cannot create a child.
		r, _, e = syscall.RawSyscall6(def.nr, a[0], a[1], a[2], a[3], a[4], a[5])
	case cloneNrs[def.nr]:
		return usagef("%s: not supported (vfork, or clone3 with pointer arguments, would run the child on our stack)", name)
	case def.nr == unix.SYS_UNSHARE:
		// A Go process is always multi-threaded, which makes unshare(2)
		// fail for CLONE_NEWUSER and only affect one thread otherwise. Do it
		// in a fresh single-threaded child, like a C program would.
		r, e, killed = forkSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), def.nr, a)
	default:
		r, _, e = syscall.RawSyscall6(def.nr, a[0], a[1], a[2], a[3], a[4], a[5])
	}
	runtime.KeepAlive(keep)

	res := syscallResult{Ret: int64(r)}
	if e != 0 {
		res = syscallResult{Ret: -1, Errno: int(e), Error: e.Error(), Name: unix.ErrnoName(e)}
	}
	if killed != "" {
		res = syscallResult{Ret: -1, Error: "child killed by " + killed}
	}
	return emit(res)
}

const noSyscall = ^uintptr(0)

// forkSyscall creates a child with create(flags) (clone or fork) that makes
// system call nr (if not noSyscall) and exits with its errno, then reaps it.
// For nr == noSyscall it returns the child's pid (the clone result);
// otherwise the child's system call result: 0 or the errno it exited with,
// or the name of the signal that killed the child (e.g. SIGSYS from seccomp).
func forkSyscall(create, flags, nr uintptr, a [6]uintptr) (uintptr, syscall.Errno, string) {
	// Block all signals around the clone so that the child never runs a Go
	// signal handler; this needs the goroutine to stay on its thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	all, old := ^uint64(0), uint64(0)
	if _, _, e := syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK,
		uintptr(unsafe.Pointer(&all)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return 0, e, ""
	}
	pid, e := rawForkCall(create, flags, nr, &a)
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_SETMASK, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
	if e != 0 {
		return 0, e, ""
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(int(pid), &ws, unix.WALL, nil)
		if err != unix.EINTR {
			break // ECHILD: e.g. CLONE_PARENT made it our sibling
		}
	}
	if nr == noSyscall {
		return pid, 0, ""
	}
	if ws.Signaled() {
		return 0, 0, signalName(ws.Signal())
	}
	return 0, syscall.Errno(ws.ExitStatus()), ""
}

// rawForkCall is the part that runs in both parent and child. The child only
// makes raw system calls (nosplit, no allocation) and never returns.
//
//go:nosplit
//go:norace
func rawForkCall(create, flags, nr uintptr, a *[6]uintptr) (uintptr, syscall.Errno) {
	pid, _, e := syscall.RawSyscall6(create, flags, 0, 0, 0, 0, 0)
	if e != 0 || pid != 0 {
		return pid, e
	}
	status := uintptr(0)
	if nr != noSyscall {
		_, _, e2 := syscall.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		status = uintptr(e2)
	}
	for {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, status, 0, 0)
	}
}

// openFlags maps the names accepted by "probe open" to O_* flags.
var openFlags = map[string]int{
	"rdonly": unix.O_RDONLY, "wronly": unix.O_WRONLY, "rdwr": unix.O_RDWR,
	"creat": unix.O_CREAT, "create": unix.O_CREAT, "excl": unix.O_EXCL,
	"trunc": unix.O_TRUNC, "append": unix.O_APPEND, "directory": unix.O_DIRECTORY,
	"nofollow": unix.O_NOFOLLOW, "path": unix.O_PATH, "cloexec": unix.O_CLOEXEC,
	"noatime": unix.O_NOATIME, "nonblock": unix.O_NONBLOCK, "noctty": unix.O_NOCTTY,
	"sync": unix.O_SYNC, "dsync": unix.O_DSYNC, "tmpfile": unix.O_TMPFILE,
	"direct": unix.O_DIRECT,
}

func parseOpenFlags(s string) (int, error) {
	flags := 0
	for _, f := range strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == '|' || r == ',' }) {
		v, ok := openFlags[strings.TrimPrefix(f, "o_")]
		if !ok {
			return 0, usagef("unknown open flag %q", f)
		}
		flags |= v
	}
	return flags, nil
}

func cmdOpen(args []string) error {
	flags, err := parseOpenFlags(args[1])
	if err != nil {
		return err
	}
	fd, err := unix.Open(args[0], flags|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return emit(resultOf(err))
}

// tryOp is one operation of "probe try".
type tryOp struct {
	usage    string
	min, max int
	run      func(a []string) (data *string, err error)
}

func noData(err error) (*string, error) { return nil, err }

func parseUint(s string, base, bits int) (uint64, error) {
	n, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, usagef("bad number %q", s)
	}
	return n, nil
}

var tryOps = map[string]tryOp{
	"truncate": {"PATH SIZE", 2, 2, func(a []string) (*string, error) {
		size, err := strconv.ParseInt(a[1], 0, 64)
		if err != nil {
			return nil, usagef("bad size %q", a[1])
		}
		return noData(unix.Truncate(a[0], size))
	}},
	"rename":  {"OLD NEW", 2, 2, func(a []string) (*string, error) { return noData(unix.Rename(a[0], a[1])) }},
	"link":    {"OLD NEW", 2, 2, func(a []string) (*string, error) { return noData(unix.Link(a[0], a[1])) }},
	"symlink": {"TARGET LINK", 2, 2, func(a []string) (*string, error) { return noData(unix.Symlink(a[0], a[1])) }},
	"mknod":   {"PATH c|b|p [MAJOR MINOR]", 2, 4, tryMknod},
	"chmod": {"PATH MODE(octal)", 2, 2, func(a []string) (*string, error) {
		mode, err := parseUint(a[1], 8, 32)
		if err != nil {
			return nil, err
		}
		return noData(unix.Chmod(a[0], uint32(mode)))
	}},
	"chown": {"PATH UID GID", 3, 3, func(a []string) (*string, error) {
		uid, err1 := strconv.Atoi(a[1])
		gid, err2 := strconv.Atoi(a[2])
		if err1 != nil || err2 != nil {
			return nil, usagef("bad uid/gid %q %q", a[1], a[2])
		}
		return noData(unix.Chown(a[0], uid, gid))
	}},
	"setxattr": {"PATH NAME VALUE", 3, 3, func(a []string) (*string, error) {
		return noData(unix.Setxattr(a[0], a[1], []byte(a[2]), 0))
	}},
	"getxattr": {"PATH NAME", 2, 2, func(a []string) (*string, error) {
		buf := make([]byte, 4096)
		n, err := unix.Lgetxattr(a[0], a[1], buf)
		if err != nil {
			return nil, err
		}
		data := string(buf[:n])
		return &data, nil
	}},
	"unlink": {"PATH", 1, 1, func(a []string) (*string, error) { return noData(unix.Unlink(a[0])) }},
	"rmdir":  {"PATH", 1, 1, func(a []string) (*string, error) { return noData(unix.Rmdir(a[0])) }},
	"mkdir":  {"PATH", 1, 1, func(a []string) (*string, error) { return noData(unix.Mkdir(a[0], 0o755)) }},
	"write": {"PATH CONTENT", 2, 2, func(a []string) (*string, error) {
		return noData(rawWrite(a[0], a[1], unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC))
	}},
	"append": {"PATH CONTENT", 2, 2, func(a []string) (*string, error) {
		return noData(rawWrite(a[0], a[1], unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND))
	}},
	"read": {"PATH", 1, 1, tryRead},
}

func rawWrite(path, content string, flags int) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for b := []byte(content); len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func tryRead(a []string) (*string, error) {
	fd, err := unix.Open(a[0], unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var data []byte
	buf := make([]byte, 65536)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			s := string(data)
			return &s, nil
		}
		data = append(data, buf[:n]...)
	}
}

func tryMknod(a []string) (*string, error) {
	types := map[string]uint32{"c": unix.S_IFCHR, "b": unix.S_IFBLK, "p": unix.S_IFIFO}
	typ, ok := types[a[1]]
	if !ok {
		return nil, usagef("bad node type %q (want c, b or p)", a[1])
	}
	var major, minor uint64
	if len(a) == 4 {
		var err error
		if major, err = parseUint(a[2], 10, 32); err != nil {
			return nil, err
		}
		if minor, err = parseUint(a[3], 10, 32); err != nil {
			return nil, err
		}
	} else if typ != unix.S_IFIFO {
		return nil, usagef("mknod %s needs MAJOR MINOR", a[1])
	}
	return noData(unix.Mknod(a[0], typ|0o644, int(unix.Mkdev(uint32(major), uint32(minor)))))
}

func cmdTry(args []string) error {
	op, ok := tryOps[args[0]]
	if !ok {
		return usagef("unknown op %q (see: probe help try)", args[0])
	}
	if n := len(args) - 1; n < op.min || n > op.max {
		return usagef("try %s %s", args[0], op.usage)
	}
	data, err := op.run(args[1:])
	if _, isUsage := err.(usageError); isUsage {
		return err
	}
	res := resultOf(err)
	res.Data = data
	return emit(res)
}
