package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// signalName returns SIGHUP..SIGSYS for the classic signals, and names real
// time signals like kill -l does (glibc numbering): SIGRTMIN (34),
// SIGRTMIN+N, SIGRTMAX-N, SIGRTMAX (64). 32 and 33 are SIG32 and SIG33.
func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	switch n := int(sig); {
	case n < 34 || n > 64:
		return "SIG" + strconv.Itoa(n)
	case n == 34:
		return "SIGRTMIN"
	case n == 64:
		return "SIGRTMAX"
	case n <= 49:
		return "SIGRTMIN+" + strconv.Itoa(n-34)
	default:
		return "SIGRTMAX-" + strconv.Itoa(64-n)
	}
}

// parseSignal accepts a number, or a name with or without the SIG prefix
// (case-insensitive), including the names printed by signalName.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n <= 64 {
		return syscall.Signal(n), nil
	}
	want := strings.ToUpper(s)
	if !strings.HasPrefix(want, "SIG") {
		want = "SIG" + want
	}
	for n := 1; n <= 64; n++ {
		if signalName(syscall.Signal(n)) == want {
			return syscall.Signal(n), nil
		}
	}
	if want == "SIGIOT" {
		return unix.SIGABRT, nil
	}
	if want == "SIGPOLL" {
		return unix.SIGIO, nil
	}
	return 0, usagef("unknown signal %q", s)
}

func cmdSignals(args []string) error {
	ready := ""
	if len(args) > 0 {
		if args[0] != "--ready" || len(args) != 2 {
			return usagef("bad arguments %q", args)
		}
		ready = args[1]
	}

	// The Go runtime preempts goroutines with SIGURG, which signal.Notify
	// would report as well. Re-exec ourselves (same pid) with asynchronous
	// preemption disabled so that only SIGURGs sent by others show up.
	if !strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		godebug := "asyncpreemptoff=1"
		if old := os.Getenv("GODEBUG"); old != "" {
			godebug = old + "," + godebug
		}
		os.Setenv("GODEBUG", godebug)
		err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
		// Not fatal: carry on, spurious SIGURGs are possible but rare.
		fmt.Fprintf(os.Stderr, "probe signals: re-exec without async preemption: %v\n", err)
	}

	var sigs []os.Signal
	for n := 1; n <= 64; n++ {
		switch s := syscall.Signal(n); {
		case s == unix.SIGKILL || s == unix.SIGSTOP:
		case n == 32 || n == 34:
			// Reserved for libc threading; the Go runtime does not let
			// Notify catch them. Ignore them at least, so that they do not
			// kill us. (SIGPROF and 33 are swallowed by the runtime.)
			setSigaction(s, sigIgn)
		default:
			sigs = append(sigs, s)
		}
	}
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, sigs...)

	if ready != "" {
		if err := os.WriteFile(ready, nil, 0o644); err != nil {
			return err
		}
	}
	fmt.Println("ready")

	timeout := time.After(60 * time.Second)
	for {
		select {
		case s := <-ch:
			sig := s.(syscall.Signal)
			fmt.Println(signalName(sig))
			if sig == unix.SIGTERM {
				return nil
			}
		case <-timeout:
			fmt.Fprintln(os.Stderr, "probe signals: no SIGTERM after 60s, exiting")
			return nil
		}
	}
}

const (
	sigDfl = 0
	sigIgn = 1
)

// setSigaction sets the disposition of sig to SIG_DFL or SIG_IGN behind the
// Go runtime's back.
func setSigaction(sig syscall.Signal, handler uintptr) syscall.Errno {
	sa := struct {
		handler, flags, restorer uintptr
		mask                     uint64
	}{handler: handler}
	_, _, e := syscall.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&sa)), 0, 8, 0, 0)
	return e
}

// defaultSignals gives every signal the Go runtime does not need back its
// kernel default disposition, so that sleep and hold react to signals like a
// C program without handlers: killed by SIGTERM, SIGSEGV, SIGRTMIN+N..., or,
// as a pid namespace's init, unaffected by them. (The runtime's own handlers
// would exit with status 2, or ignore real-time signals.) SIGURG (goroutine
// preemption), SIGCHLD and SIGPROF are left alone; their default is to be
// ignored anyway, except SIGPROF.
func defaultSignals() {
	for n := 1; n <= 64; n++ {
		switch s := syscall.Signal(n); s {
		case unix.SIGURG, unix.SIGCHLD, unix.SIGPROF, unix.SIGKILL, unix.SIGSTOP, 33:
		default:
			setSigaction(s, sigDfl)
		}
	}
}

func cmdExitSig(args []string) error {
	sig, err := parseSignal(args[0])
	if err != nil {
		return err
	}
	// Install SIG_DFL directly: signal.Reset would only give the signal back
	// to the Go runtime's own handler, which for most signals exits with
	// status 2 instead of dying from the signal.
	if e := setSigaction(sig, sigDfl); e != 0 && sig != unix.SIGKILL && sig != unix.SIGSTOP {
		return fmt.Errorf("rt_sigaction(%s): %w", signalName(sig), e)
	}
	set := uint64(1) << (uint(sig) - 1)
	syscall.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_UNBLOCK, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0)
	if err := unix.Kill(unix.Getpid(), sig); err != nil {
		return fmt.Errorf("kill(self, %s): %w", signalName(sig), err)
	}
	// Still alive: the signal is ignored by default, or we are a pid
	// namespace's init, which the kernel protects from its own signals.
	time.Sleep(time.Second)
	fmt.Fprintf(os.Stderr, "probe exitsig: still alive after %s, exiting with %d\n", signalName(sig), 128+int(sig))
	return exitCode(128 + int(sig))
}

func cmdSpawn(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return usagef("bad count %q", args[0])
	}
	// argv[0] "probe" so that the children dispatch on argv[1].
	argv := append([]string{"probe"}, args[1:]...)
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}
	procs := make([]*os.Process, 0, n)
	pids := make([]int, 0, n)
	for i := 0; i < n; i++ {
		p, err := os.StartProcess("/proc/self/exe", argv, attr)
		if err != nil {
			for _, p := range procs {
				p.Kill()
				p.Wait()
			}
			return err
		}
		procs = append(procs, p)
		pids = append(pids, p.Pid)
	}
	if err := emit(map[string]any{"pids": pids}); err != nil {
		return err
	}
	type exit struct {
		Pid    int    `json:"pid"`
		Exit   int    `json:"exit"`
		Signal string `json:"signal,omitempty"`
	}
	results := make(chan exit)
	for _, p := range procs {
		go func() {
			st, err := p.Wait()
			e := exit{Pid: p.Pid, Exit: -1}
			if err == nil {
				ws := st.Sys().(syscall.WaitStatus)
				e.Exit = ws.ExitStatus()
				if ws.Signaled() {
					e.Signal = signalName(ws.Signal())
				}
			}
			results <- e
		}()
	}
	for range procs {
		if err := emit(<-results); err != nil {
			return err
		}
	}
	return nil
}

// cmdRun execs CMD like a shell would: directly if it contains a slash,
// else by trying each $PATH entry, remembering EACCES-like errors.
func cmdRun(args []string) error {
	env := os.Environ()
	try := func(path string) error { return syscall.Exec(path, args, env) }
	var err error
	if strings.Contains(args[0], "/") {
		err = try(args[0])
	} else {
		path, ok := os.LookupEnv("PATH")
		if !ok {
			path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		}
		err = unix.ENOENT
		for _, dir := range filepath.SplitList(path) {
			if dir == "" {
				dir = "."
			}
			e := try(filepath.Join(dir, args[0]))
			if !errors.Is(e, unix.ENOENT) && !errors.Is(e, unix.ENOTDIR) {
				err = e
			}
		}
	}
	if err := emit(resultOf(err)); err != nil {
		return err
	}
	if errors.Is(err, unix.ENOENT) {
		return exitCode(127)
	}
	return exitCode(126)
}
