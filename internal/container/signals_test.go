package container

import (
	"os"
	"os/signal"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCatchSignalsKeepsRoomForForwarded: while nothing drains the caught
// signals (the exec request, the start of a run), the Go runtime's own
// SIGURG (goroutine preemption) and SIGCHLD must not fill the buffer and
// push out a signal the user sent, which would be lost.
func TestCatchSignalsKeepsRoomForForwarded(t *testing.T) {
	sigs := catchSignals()
	defer signal.Stop(sigs)
	for i := 0; i < 2*cap(sigs); i++ {
		for _, s := range []unix.Signal{unix.SIGURG, unix.SIGCHLD} {
			if err := unix.Kill(os.Getpid(), s); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Microsecond) // one delivery each, not coalesced
	}
	// Delivered to every channel in one pass: once probe has it, so has
	// sigs, unless it had no room.
	probe := make(chan os.Signal, 1)
	signal.Notify(probe, unix.SIGUSR1)
	if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-probe:
	case <-time.After(time.Minute): // a watchdog, not a measure
		t.Fatal("SIGUSR1 never delivered")
	}
	signal.Stop(probe) // returns once the delivery to every channel is done
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGUSR1 {
				return
			}
		default:
			t.Fatal("SIGUSR1 was lost: the buffer was full of the runtime's SIGURG and SIGCHLD")
		}
	}
}
