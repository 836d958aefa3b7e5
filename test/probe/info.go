package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func cmdEnv([]string) error {
	for _, kv := range os.Environ() {
		fmt.Println(kv)
	}
	return nil
}

func cmdID([]string) error {
	groups, err := unix.Getgroups()
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []int{}
	}
	return emit(struct {
		UID    int   `json:"uid"`
		GID    int   `json:"gid"`
		EUID   int   `json:"euid"`
		EGID   int   `json:"egid"`
		Groups []int `json:"groups"`
	}{unix.Getuid(), unix.Getgid(), unix.Geteuid(), unix.Getegid(), groups})
}

func cmdCwd([]string) error {
	wd, err := unix.Getwd() // getcwd(2); unlike os.Getwd it never trusts $PWD
	if err != nil {
		return err
	}
	fmt.Println(wd)
	return nil
}

func cmdPid([]string) error {
	return emit(map[string]int{"pid": unix.Getpid(), "ppid": unix.Getppid()})
}

func cmdHostname([]string) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	return emit(map[string]string{
		"hostname":   unix.ByteSliceToString(u.Nodename[:]),
		"domainname": unix.ByteSliceToString(u.Domainname[:]),
	})
}

func cmdUmask([]string) error {
	old := unix.Umask(0)
	unix.Umask(old)
	return emit(map[string]string{"umask": fmt.Sprintf("%04o", old)})
}

// procStatus returns the "Key: value" fields of /proc/self/status.
func procStatus() (map[string]string, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}

// capNames maps capability numbers to their names (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// decodeCaps turns a hex capability mask into sorted-by-number cap names;
// unknown bits are reported as CAP_<N>.
func decodeCaps(hex string) ([]string, error) {
	mask, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("bad capability mask %q", hex)
	}
	names := []string{}
	for bit := 0; bit < 64; bit++ {
		if mask&(1<<bit) == 0 {
			continue
		}
		if bit < len(capNames) {
			names = append(names, capNames[bit])
		} else {
			names = append(names, "CAP_"+strconv.Itoa(bit))
		}
	}
	return names, nil
}

func cmdCaps([]string) error {
	st, err := procStatus()
	if err != nil {
		return err
	}
	out := map[string]any{}
	names := map[string][]string{}
	for _, set := range []struct{ key, field string }{
		{"inh", "CapInh"}, {"prm", "CapPrm"}, {"eff", "CapEff"}, {"bnd", "CapBnd"}, {"amb", "CapAmb"},
	} {
		v, ok := st[set.field]
		if !ok {
			continue // e.g. CapAmb on very old kernels
		}
		out[set.key] = v
		if names[set.key], err = decodeCaps(v); err != nil {
			return err
		}
	}
	out["names"] = names
	return emit(out)
}

func cmdStatus([]string) error {
	st, err := procStatus()
	if err != nil {
		return err
	}
	out := map[string]any{}
	for key, field := range map[string]string{"nnp": "NoNewPrivs", "seccomp": "Seccomp", "seccomp_filters": "Seccomp_filters"} {
		if v, ok := st[field]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("bad %s value %q", field, v)
			}
			out[key] = n
		}
	}
	return emit(out)
}

// openFds lists the open file descriptors using raw system calls only, so
// that the Go runtime does not open anything (such as its epoll instance)
// behind our back. The descriptor used to read /proc/self/fd is excluded.
func openFds() ([]int, error) {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dfd)
	var names []string
	buf := make([]byte, 16384)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	fds := []int{}
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err == nil && fd != dfd {
			fds = append(fds, fd)
		}
	}
	sortInts(fds)
	return fds, nil
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

func cmdFds([]string) error {
	fds, err := openFds()
	if err != nil {
		return err
	}
	out := map[string]string{}
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			continue // closed in the meantime
		}
		out[strconv.Itoa(fd)] = target
	}
	return emit(map[string]any{"fds": out})
}

func cmdListenFds([]string) error {
	fds, err := openFds()
	if err != nil {
		return err
	}
	above := []int{}
	for _, fd := range fds {
		if fd >= 3 {
			above = append(above, fd)
		}
	}
	return emit(map[string]any{
		"LISTEN_FDS":     os.Getenv("LISTEN_FDS"),
		"LISTEN_PID":     os.Getenv("LISTEN_PID"),
		"LISTEN_FDNAMES": os.Getenv("LISTEN_FDNAMES"),
		"pid":            unix.Getpid(),
		"fds":            above,
	})
}

func copyFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(os.Stdout, f)
	return err
}

func cmdMounts([]string) error { return copyFile("/proc/self/mountinfo") }

func cmdOomScore([]string) error { return copyFile("/proc/self/oom_score_adj") }

func cmdSysctl(args []string) error {
	key := strings.TrimPrefix(args[0], "/proc/sys/")
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	data, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return err
	}
	fmt.Println(strings.TrimRight(string(data), "\n"))
	return nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return "unknown"
}

func cmdStat(args []string) error {
	var st unix.Stat_t
	if err := unix.Lstat(args[0], &st); err != nil {
		return &os.PathError{Op: "lstat", Path: args[0], Err: err}
	}
	return emit(struct {
		Mode      string `json:"mode"`
		Type      string `json:"type"`
		UID       uint32 `json:"uid"`
		GID       uint32 `json:"gid"`
		Size      int64  `json:"size"`
		RdevMajor uint32 `json:"rdev_major"`
		RdevMinor uint32 `json:"rdev_minor"`
	}{
		fmt.Sprintf("%04o", st.Mode&0o7777), fileType(st.Mode), st.Uid, st.Gid, st.Size,
		unix.Major(st.Rdev), unix.Minor(st.Rdev),
	})
}

func cmdReadlink(args []string) error {
	target, err := os.Readlink(args[0])
	if err != nil {
		return err
	}
	fmt.Println(target)
	return nil
}

var rlimitNames = []string{
	unix.RLIMIT_CPU: "RLIMIT_CPU", unix.RLIMIT_FSIZE: "RLIMIT_FSIZE",
	unix.RLIMIT_DATA: "RLIMIT_DATA", unix.RLIMIT_STACK: "RLIMIT_STACK",
	unix.RLIMIT_CORE: "RLIMIT_CORE", unix.RLIMIT_RSS: "RLIMIT_RSS",
	unix.RLIMIT_NPROC: "RLIMIT_NPROC", unix.RLIMIT_NOFILE: "RLIMIT_NOFILE",
	unix.RLIMIT_MEMLOCK: "RLIMIT_MEMLOCK", unix.RLIMIT_AS: "RLIMIT_AS",
	unix.RLIMIT_LOCKS: "RLIMIT_LOCKS", unix.RLIMIT_SIGPENDING: "RLIMIT_SIGPENDING",
	unix.RLIMIT_MSGQUEUE: "RLIMIT_MSGQUEUE", unix.RLIMIT_NICE: "RLIMIT_NICE",
	unix.RLIMIT_RTPRIO: "RLIMIT_RTPRIO", unix.RLIMIT_RTTIME: "RLIMIT_RTTIME",
}

func cmdRlimits([]string) error {
	out := map[string][2]uint64{}
	for res, name := range rlimitNames {
		var lim unix.Rlimit
		if err := unix.Prlimit(0, res, nil, &lim); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out[name] = [2]uint64{lim.Cur, lim.Max}
	}
	if nofile, ok := origNofile(out["RLIMIT_NOFILE"]); ok {
		out["RLIMIT_NOFILE"] = nofile
	}
	return emit(out)
}

// origNofile undoes the Go runtime's start-up change of RLIMIT_NOFILE.
//
// The syscall package raises the soft RLIMIT_NOFILE to hard-1 during init,
// so what we see is not what the runtime configured. The original value is
// only kept in an unexported variable, but Go restores it in the children it
// starts. So when the soft limit looks raised, start a traced child: it stops
// right after execve, before its own runtime raises the limit again, and its
// RLIMIT_NOFILE is read with prlimit(2) before it is killed.
func origNofile(cur [2]uint64) ([2]uint64, bool) {
	if cur[1] == unix.RLIM_INFINITY || cur[1] == 0 || cur[0] != cur[1]-1 {
		return cur, false
	}
	cmd := exec.Command("/proc/self/exe", "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	if err := startTraced(cmd); err != nil {
		fmt.Fprintf(os.Stderr, "probe rlimits: cannot read original RLIMIT_NOFILE (%v); showing the Go-raised value\n", err)
		return cur, false
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var lim unix.Rlimit
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		fmt.Fprintf(os.Stderr, "probe rlimits: prlimit(child): %v\n", err)
		return cur, false
	}
	return [2]uint64{lim.Cur, lim.Max}, true
}

func cmdPersonality([]string) error {
	r, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	if e != 0 {
		return e
	}
	return emit(map[string]int{"personality": int(r)})
}

func isTTY(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

func cmdTty([]string) error {
	out := map[string]any{
		"stdin": isTTY(0), "stdout": isTTY(1), "stderr": isTTY(2),
		"rows": 0, "cols": 0,
	}
	// Window size of stdin if it is a terminal, else of stdout.
	for _, fd := range []int{0, 1} {
		if isTTY(fd) {
			if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
				out["rows"], out["cols"] = int(ws.Row), int(ws.Col)
			}
			break
		}
	}
	// Opening /dev/tty fails with ENXIO without a controlling terminal.
	if fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err == nil {
		unix.Close(fd)
		out["ctty"] = true
	} else {
		out["ctty"] = false
	}
	sid, _ := unix.Getsid(0)
	out["sid"] = sid
	out["pgid"], _ = unix.Getpgid(0)
	return emit(out)
}

// startTraced starts cmd (which has SysProcAttr.Ptrace set) from a locked OS
// thread, since the tracer of a PTRACE_TRACEME child is the forking thread.
func startTraced(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return cmd.Start()
}
