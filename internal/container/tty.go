package container

import (
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// attachedTty connects the CLI's terminal to a container's pty master for
// `run -t` and `exec -t` without --console-socket.
type attachedTty struct {
	master  *os.File
	saved   *unix.Termios // stdin's settings before raw mode, if a terminal
	outDone chan struct{}
	once    sync.Once
}

// attachTty puts stdin in raw mode (when it is a terminal), copies the size
// and starts copying in both directions.
func attachTty(master *os.File) (*attachedTty, error) {
	t := &attachedTty{master: master, outDone: make(chan struct{})}
	if tio, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err == nil {
		saved := *tio
		t.saved = &saved
		raw := *tio
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(int(os.Stdin.Fd()), unix.TCSETS, &raw); err != nil {
			return nil, err
		}
		t.resize()
	}
	go func() {
		io.Copy(os.Stdout, master)
		close(t.outDone)
	}()
	go io.Copy(master, os.Stdin)
	return t, nil
}

// resize copies the CLI terminal's size to the container's.
func (t *attachedTty) resize() {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	_ = unix.IoctlSetWinsize(int(t.master.Fd()), unix.TIOCSWINSZ, ws)
}

// drain waits (briefly) for the container's last output.
func (t *attachedTty) drain() {
	select {
	case <-t.outDone:
	case <-time.After(2 * time.Second):
	}
}

// restore puts the CLI's terminal back as it was.
func (t *attachedTty) restore() {
	t.once.Do(func() {
		if t.saved != nil {
			_ = unix.IoctlSetTermios(int(os.Stdin.Fd()), unix.TCSETS, t.saved)
		}
		t.master.Close()
	})
}
