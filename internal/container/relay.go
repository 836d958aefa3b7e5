package container

import (
	"os"

	"golang.org/x/sys/unix"
)

// relaySignals forwards the signals the CLI gets (sigs) with send until
// done delivers the exit code, which it returns. SIGWINCH resizes tty
// instead; SIGCHLD, SIGPIPE and SIGURG (the Go runtime's preemption) are
// the CLI's own and never forwarded. Used by a foreground run and exec.
func relaySignals(sigs <-chan os.Signal, done <-chan int, tty *attachedTty, send func(unix.Signal)) int {
	for {
		select {
		case code := <-done:
			return code
		case s := <-sigs:
			sig, ok := s.(unix.Signal)
			if !ok {
				continue
			}
			switch sig {
			case unix.SIGCHLD, unix.SIGPIPE, unix.SIGURG:
				continue
			case unix.SIGWINCH:
				if tty != nil {
					tty.resize()
				}
				continue
			}
			send(sig)
		}
	}
}
