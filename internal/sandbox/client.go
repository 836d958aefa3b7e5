package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// sockaddr builds the address of a socket file. Paths longer than
// sun_path (108 bytes) go through /proc/self/fd/<dir>/<name>, which is short
// whatever --root is; dir must stay open until bind or connect returns.
func sockaddr(path string) (*unix.SockaddrUnix, *os.File, error) {
	if len(path) < 100 {
		return &unix.SockaddrUnix{Name: path}, nil, nil
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	name := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
	return &unix.SockaddrUnix{Name: name}, dir, nil
}

// Listen creates the controller socket at path and returns it listening.
func Listen(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("controller socket: %w", err)
	}
	sa, dir, err := sockaddr(path)
	if err == nil {
		err = unix.Bind(fd, sa)
		if dir != nil {
			dir.Close()
		}
	}
	if err == nil {
		// Only our own user (the directory is 0700, or 0711 with a spec
		// user namespace): the umask must not decide who may connect.
		err = unix.Fchmodat(unix.AT_FDCWD, path, 0o600, 0)
	}
	if err == nil {
		err = unix.Listen(fd, 16)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("controller socket %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "controller"), nil
}

// DialTimeout bounds connecting to boot.
const DialTimeout = 5 * time.Second

// Dial connects to boot's controller socket at path.
func Dial(path string) (*ipc.Conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sa, dir, err := sockaddr(path)
	if err == nil {
		err = unix.Connect(fd, sa)
		if dir != nil {
			dir.Close()
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect to moat boot: %w", err)
	}
	return ipc.FromFD(fd, "controller")
}

// Request sends one request to boot and decodes its answer into reply.
func Request(path string, req ipc.Message, reply ipc.Message, timeout time.Duration) error {
	conn, err := Dial(path)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if err := conn.Send(req); err != nil {
		return err
	}
	files, err := conn.WaitFor(reply)
	for _, f := range files {
		f.Close()
	}
	return err
}
