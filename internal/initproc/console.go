package initproc

import (
	"fmt"
	"os"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal created in the container's devpts instance.
type pty struct {
	master *os.File
	slave  *os.File
}

func (p *pty) close() {
	if p == nil {
		return
	}
	if p.master != nil {
		p.master.Close()
	}
	if p.slave != nil {
		p.slave.Close()
	}
}

// newPty opens a pty through ptmx, which is resolved inside root (so it is the
// container's devpts, never the host's). The slave comes from the master with
// TIOCGPTPEER: no path lookup that the container could redirect.
func newPty(master *os.File, proc *specs.Process) (*pty, error) {
	p := &pty{master: master}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		p.close()
		return nil, fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER takes the slave's open flags as its argument.
	r1, _, errno := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		p.close()
		return nil, fmt.Errorf("open pty slave: %w", errno)
	}
	sfd := int(r1)
	p.slave = os.NewFile(uintptr(sfd), "pty-slave")
	if err := unix.Fchown(sfd, int(proc.User.UID), -1); err != nil {
		p.close()
		return nil, fmt.Errorf("chown pty slave: %w", err)
	}
	if cs := proc.ConsoleSize; cs != nil {
		ws := &unix.Winsize{Row: uint16(cs.Height), Col: uint16(cs.Width)}
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws); err != nil {
			p.close()
			return nil, fmt.Errorf("set console size: %w", err)
		}
	}
	return p, nil
}

// containerPty creates the init's terminal and binds it over /dev/console.
// Precondition: before pivot_root (host /proc is used for fd paths).
func (r *rootfs) containerPty(proc *specs.Process) (*pty, error) {
	ptmx, err := r.lookup("/dev/ptmx")
	if err != nil {
		return nil, fmt.Errorf("terminal requested but the container has no usable /dev/ptmx (mount devpts at /dev/pts): %w", err)
	}
	defer ptmx.Close()
	master, err := pathrs.Reopen(ptmx, unix.O_RDWR|unix.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("open ptmx: %w", err)
	}
	p, err := newPty(master, proc)
	if err != nil {
		return nil, err
	}
	console, err := r.ensureFile("/dev/console")
	if err != nil {
		p.close()
		return nil, err
	}
	defer console.Close()
	if err := unix.Mount(fdPath(p.slave), fdPath(console), "", unix.MS_BIND, ""); err != nil {
		p.close()
		return nil, fmt.Errorf("bind pty over /dev/console: %w", err)
	}
	return p, nil
}

// execPty creates a terminal for an exec'd process. The caller is already
// inside the container's mount namespace, so /dev/ptmx is resolved with
// openat2 confined to the container's root and without magic links.
func execPty(proc *specs.Process) (*pty, error) {
	how := &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, "/dev/ptmx", how)
	if err != nil {
		return nil, fmt.Errorf("terminal requested but the container has no usable /dev/ptmx: %w", err)
	}
	return newPty(os.NewFile(uintptr(fd), "ptmx"), proc)
}

// useTerminal makes the pty slave the controlling terminal and stdio.
// Precondition: the caller is a session leader (setsid).
func useTerminal(slave *os.File) error {
	fd := int(slave.Fd())
	if err := unix.IoctlSetInt(fd, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for i := 0; i <= 2; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("dup pty to fd %d: %w", i, err)
		}
	}
	return nil
}
