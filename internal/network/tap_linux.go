package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// TunDevice is the clone device CreateTap opens.
const TunDevice = "/dev/net/tun"

// ErrTunUnusable wraps every failure caused by /dev/net/tun being absent or
// not accessible, so callers (across processes: see package ipc) can tell
// it from other setup errors.
var ErrTunUnusable = ipc.ErrTunUnusable

const tunHint = "the sandbox network needs /dev/net/tun: as root on the host, " +
	"load the tun module and chmod 0666 /dev/net/tun (this is harmless), " +
	"or use --network=none/host"

func loUp(nl *rtnl) error {
	idx, err := ifIndex("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := nl.linkUp(idx, 0); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	return nil
}

// CreateTap sets lo up, creates the TAP device name (IFF_TAP|IFF_NO_PI,
// non-persistent: it vanishes when the last fd closes), sets its MTU, gives it
// addr, sets it up and adds a default route via gw. It returns the TAP fd
// (blocking, close-on-exec); the caller hands it to the supervisor (Start) and
// then closes its own copy. Errors caused by /dev/net/tun wrap ErrTunUnusable
// and say what to do.
//
// Precondition: runs in the container's network namespace (a fresh one, with
// no device called name), as root in that namespace's user namespace
// (CAP_NET_ADMIN). Every thread of the caller must be in that namespace, or
// the caller must hold its OS thread locked.
func CreateTap(name string, mtu int, addr netip.Prefix, gw netip.Addr) (*os.File, error) {
	if !addr.Addr().Is4() || !gw.Is4() {
		return nil, fmt.Errorf("create %s: only IPv4 addresses are supported (%v via %v)", name, addr, gw)
	}
	if !addr.Contains(gw) {
		return nil, fmt.Errorf("create %s: gateway %v is outside %v", name, gw, addr)
	}
	nl, err := openRtnl()
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	defer nl.close()
	if err := loUp(nl); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	tap, err := openTap(name)
	if err != nil {
		return nil, err
	}
	if err := configureTap(nl, name, mtu, addr, gw); err != nil {
		tap.Close()
		return nil, fmt.Errorf("configure %s: %w", name, err)
	}
	return tap, nil
}

// CreateTapIn is CreateTap run in another network namespace, from a thread
// of the caller that joins it and then dies with its goroutine: the caller's
// other threads stay where they are. nsFD is the namespace's fd, or a pidfd
// of a process in it (no /proc lookup, no pid reuse).
//
// Precondition: the caller has CAP_SYS_ADMIN and CAP_NET_ADMIN over the
// namespace (root in the user namespace that owns it).
func CreateTapIn(nsFD int, name string, mtu int, addr netip.Prefix, gw netip.Addr) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		// Never unlocked: the thread is in another namespace now, so it
		// exits with this goroutine instead of going back to the pool.
		runtime.LockOSThread()
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			res <- result{err: fmt.Errorf("create %s: join the network namespace: %w", name, err)}
			return
		}
		f, err := CreateTap(name, mtu, addr, gw)
		res <- result{f, err}
	}()
	r := <-res
	return r.f, r.err
}

func openTap(name string) (*os.File, error) {
	fd, err := unix.Open(TunDevice, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) ||
			errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("open %s: %w (%w); %s", TunDevice, err, ErrTunUnusable, tunHint)
		}
		return nil, fmt.Errorf("open %s: %w", TunDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			// In a user namespace TUNSETIFF fails when the device
			// node's owner is not mapped, even with CAP_NET_ADMIN.
			return nil, fmt.Errorf("create %s (TUNSETIFF): %w (%w); %s", name, err, ErrTunUnusable, tunHint)
		}
		return nil, fmt.Errorf("create %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), TunDevice), nil
}

func configureTap(nl *rtnl, name string, mtu int, addr netip.Prefix, gw netip.Addr) error {
	idx, err := ifIndex(name)
	if err != nil {
		return err
	}
	if err := nl.linkUp(idx, mtu); err != nil {
		return err
	}
	if err := nl.addAddr(idx, addr); err != nil {
		return err
	}
	return nl.addDefaultRoute(idx, gw)
}
