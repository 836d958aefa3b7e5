package initproc

import (
	"fmt"
	"os"
	"path/filepath"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/spec"
)

// defaultDevices are present in every container (runtime-spec, "Default
// Devices").
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// devNeedsSetup reports whether init populates /dev: not when the spec
// bind-mounts the host's /dev.
func devNeedsSetup(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if filepath.Clean(m.Destination) == "/dev" && spec.IsBind(m) {
			return false
		}
	}
	return true
}

// setupDev creates the default devices and linux.devices, the /dev symlinks
// and the ptmx link.
func (r *rootfs) setupDev(s *specs.Spec) error {
	devs := append([]specs.LinuxDevice{}, defaultDevices...)
	for _, d := range s.Linux.Devices {
		devs = replaceDevice(devs, d)
	}
	for _, d := range devs {
		if err := r.createDevice(d); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
	}
	return r.devLinks()
}

func replaceDevice(devs []specs.LinuxDevice, d specs.LinuxDevice) []specs.LinuxDevice {
	for i := range devs {
		if filepath.Clean(devs[i].Path) == filepath.Clean(d.Path) {
			devs[i] = d
			return devs
		}
	}
	return append(devs, d)
}

// parentDir opens the directory that will hold path inside the root,
// creating it if needed, as a real (non-O_PATH) descriptor for *at calls.
func (r *rootfs) parentDir(path string) (*os.File, error) {
	h, err := r.ensureDir(filepath.Dir(filepath.Clean(path)))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return pathrs.Reopen(h, unix.O_RDONLY|unix.O_DIRECTORY)
}

func deviceMode(d specs.LinuxDevice) (uint32, error) {
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(*d.FileMode) & 0o7777
	}
	switch d.Type {
	case "c", "u":
		return unix.S_IFCHR | perm, nil
	case "b":
		return unix.S_IFBLK | perm, nil
	case "p":
		return unix.S_IFIFO | perm, nil
	}
	return 0, fmt.Errorf("unknown device type %q", d.Type)
}

// createDevice makes a device node, or in a user namespace (where mknod of
// devices is refused) bind-mounts the host's node onto an empty file.
func (r *rootfs) createDevice(d specs.LinuxDevice) error {
	mode, err := deviceMode(d)
	if err != nil {
		return err
	}
	dir, err := r.parentDir(d.Path)
	if err != nil {
		return err
	}
	defer dir.Close()
	base := filepath.Base(d.Path)
	if err := unix.Unlinkat(int(dir.Fd()), base, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove existing entry: %w", err)
	}
	if r.userNS && d.Type != "p" {
		return r.bindHostDevice(dir, base, d.Path)
	}
	dev := unix.Mkdev(uint32(d.Major), uint32(d.Minor))
	if err := unix.Mknodat(int(dir.Fd()), base, mode, int(dev)); err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	if err := unix.Fchownat(int(dir.Fd()), base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// mknod applies the umask; set the mode the spec asked for.
	return unix.Fchmodat(int(dir.Fd()), base, mode&0o7777, 0)
}

func (r *rootfs) bindHostDevice(dir *os.File, base, path string) error {
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_WRONLY, 0o000)
	if err != nil {
		return fmt.Errorf("create bind target: %w", err)
	}
	unix.Close(fd)
	target, err := r.lookup(path)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Mount(path, fdPath(target), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind host device: %w", err)
	}
	return nil
}

// devLinks creates the standard /dev symlinks.
func (r *rootfs) devLinks() error {
	dir, err := r.parentDir("/dev/null")
	if err != nil {
		return err
	}
	defer dir.Close()
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], int(dir.Fd()), l[1]); err != nil && err != unix.EEXIST {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	// With a devpts instance at /dev/pts, /dev/ptmx must lead to its ptmx.
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), "pts/ptmx", &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if err := unix.Unlinkat(int(dir.Fd()), "ptmx", 0); err != nil && err != unix.ENOENT {
			return fmt.Errorf("replace /dev/ptmx: %w", err)
		}
		if err := unix.Symlinkat("pts/ptmx", int(dir.Fd()), "ptmx"); err != nil {
			return fmt.Errorf("symlink /dev/ptmx: %w", err)
		}
	}
	return nil
}
