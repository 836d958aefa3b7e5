package procutil

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var signals = map[string]unix.Signal{
	"ABRT": unix.SIGABRT, "ALRM": unix.SIGALRM, "BUS": unix.SIGBUS, "CHLD": unix.SIGCHLD,
	"CLD": unix.SIGCHLD, "CONT": unix.SIGCONT, "FPE": unix.SIGFPE, "HUP": unix.SIGHUP,
	"ILL": unix.SIGILL, "INT": unix.SIGINT, "IO": unix.SIGIO, "IOT": unix.SIGIOT,
	"KILL": unix.SIGKILL, "PIPE": unix.SIGPIPE, "POLL": unix.SIGPOLL, "PROF": unix.SIGPROF,
	"PWR": unix.SIGPWR, "QUIT": unix.SIGQUIT, "SEGV": unix.SIGSEGV, "STKFLT": unix.SIGSTKFLT,
	"STOP": unix.SIGSTOP, "SYS": unix.SIGSYS, "TERM": unix.SIGTERM, "TRAP": unix.SIGTRAP,
	"TSTP": unix.SIGTSTP, "TTIN": unix.SIGTTIN, "TTOU": unix.SIGTTOU, "URG": unix.SIGURG,
	"USR1": unix.SIGUSR1, "USR2": unix.SIGUSR2, "VTALRM": unix.SIGVTALRM,
	"WINCH": unix.SIGWINCH, "XCPU": unix.SIGXCPU, "XFSZ": unix.SIGXFSZ,
}

const (
	sigRTMIN = 34
	sigRTMAX = 64
)

// ParseSignal accepts "KILL", "SIGKILL", "kill", "9", "RTMIN+3" and
// "SIGRTMAX-1".
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > sigRTMAX {
			return 0, fmt.Errorf("invalid signal number %d (want 1..%d)", n, sigRTMAX)
		}
		return unix.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signals[name]; ok {
		return sig, nil
	}
	for base, n := range map[string]int{"RTMIN": sigRTMIN, "RTMAX": sigRTMAX} {
		if !strings.HasPrefix(name, base) {
			continue
		}
		rest := name[len(base):]
		off := 0
		if rest != "" {
			v, err := strconv.Atoi(rest)
			if err != nil {
				break
			}
			off = v
		}
		if sig := n + off; sig >= sigRTMIN && sig <= sigRTMAX {
			return unix.Signal(sig), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// SignalNames lists the signal names ParseSignal knows (without RT forms).
func SignalNames() []string {
	var out []string
	for n := range signals {
		out = append(out, "SIG"+n)
	}
	sort.Strings(out)
	return out
}
