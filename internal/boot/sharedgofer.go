package boot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/state"
)

// The shared root (--shared-gofer): containers of the same image, run as
// real root under the memory overlay, take their read-only root from one
// FUSE superblock served by one `moat gofer --shared`, which outlives them
// for a while, so that the kernel's dentry, inode and page caches of the
// image stay warm for the next container. Each container keeps its own
// memory upper layer; bind mounts stay per container (they can change).
//
//	boot (first)                                shared gofer
//	 flock the directory; connect: refused
//	 /dev/fuse; fsopen/fsmount (detached, ro)
//	 bind <key>.sock; spawn (setsid, own mnt ns) -> jail, confine; serve FUSE
//	 connect <key>.sock ----------------------> accept: refcount+1
//	 <- [the detached mount] -------------------|
//	 open_tree(CLONE) -> init move_mounts it as the overlay's lower
//	 ... container runs; the connection is held ...
//	 exit (connection closes) ----------------> refcount-1; idle -> exit
//
// A later boot connects and gets the same mount. The key names the image
// (the rootfs's dev and inode), the mode, and moat's own executable, so a
// rebuilt moat never attaches to an older server.

// sharedGoferDir holds the shared gofers' sockets (real root only).
const sharedGoferDir = "/run/moat-shared-gofer"

// sharedProtocol changes whenever the boot/shared-gofer exchange does.
const sharedProtocol = "moat-shared-root-1"

// sharedRoot is boot's attachment to a shared gofer.
type sharedRoot struct {
	conn  *os.File // held for the container's life: the gofer's reference count
	clone *os.File // a detached clone of the shared FUSE mount, for init
	done  chan struct{}
}

// sharedEligible reports whether this container may take a shared root:
// real root in the host's user namespace (a FUSE superblock is usable only
// from its own user namespace and those below it), the memory overlay over
// a read-only root.
func (b *boot) sharedEligible(cfg *config.Config) bool {
	if !cfg.SharedGofer || cfg.Overlay != config.OverlayMemory || b.plan.Spec.Root.Readonly ||
		b.userNS || !procutil.InitialUserNS() {
		return false
	}
	// The host's own "/" (moat do) is live: a cache outliving one command
	// would show the next one stale files.
	if filepath.Clean(b.plan.Rootfs) == "/" {
		return false
	}
	// An overlayfs rootfs is what Docker, containerd and Podman make for
	// each container (its own upper layer): no other container ever has
	// the same one, and a shared gofer would only linger.
	var st unix.Statfs_t
	return unix.Statfs(b.plan.Rootfs, &st) == nil && st.Type != unix.OVERLAYFS_SUPER_MAGIC
}

// sharedKey names the shared gofer for this image and this moat.
// It records the image's identity (b.sharedImg): the shared gofer it
// starts serves only that directory.
func (b *boot) sharedKey() (string, error) {
	var img, exe unix.Stat_t
	if err := unix.Stat(b.plan.Rootfs, &img); err != nil {
		return "", fmt.Errorf("rootfs: %w", err)
	}
	b.sharedImg = fmt.Sprintf("%d:%d", img.Dev, img.Ino)
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return "", fmt.Errorf("own executable: %w", err)
	}
	h := sha256.Sum256([]byte(fmt.Sprintf("%s img=%d:%d exe=%d:%d:%d overlay=memory uid=host",
		sharedProtocol, img.Dev, img.Ino, exe.Dev, exe.Ino, exe.Mtim.Nano())))
	return hex.EncodeToString(h[:12]), nil
}

// sharedDir is where shared gofers listen: a 0700 directory of root's,
// beside the state roots rather than in one (`moat list` would show it as
// a container), and one for every state root: a shared gofer is keyed by
// its image, not by who runs the container.
func sharedDir() (string, error) {
	dir := sharedGoferDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("shared gofer directory: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return "", fmt.Errorf("shared gofer directory: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o077 != 0 {
		return "", fmt.Errorf("shared gofer directory %s: not a 0700 directory of root's", dir)
	}
	return dir, nil
}

// attachShared connects to the shared gofer of this image, starting one if
// there is none, and returns a clone of its mount.
func (b *boot) attachShared(cfg *config.Config) (*sharedRoot, error) {
	key, err := b.sharedKey()
	if err != nil {
		return nil, err
	}
	dir, err := sharedDir()
	if err != nil {
		return nil, err
	}
	// One lock for the directory: held for a connect and a receive, or
	// for the start of a shared gofer.
	lock, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := state.FlockWait(int(lock.Fd()), 30*time.Second); err != nil {
		return nil, fmt.Errorf("shared gofer lock: %w", err)
	}
	sock := filepath.Join(dir, key+".sock")
	// A gofer going idle closes its listener: a connection may then be
	// refused, or accepted and closed unanswered. Start a new one.
	for attempt := 0; attempt < 2; attempt++ {
		if s, err := dialShared(sock, sharedDialTimeout); err == nil {
			procutil.Trace("boot", "shared root attached")
			return s, nil
		} else if attempt > 0 {
			return nil, err
		}
		sweepShared(dir)
		if err := b.spawnShared(cfg, sock); err != nil {
			return nil, err
		}
		procutil.Trace("boot", "shared gofer spawned")
	}
	return nil, errors.New("unreachable")
}

// sharedDialTimeout bounds the wait for the shared gofer's mount.
const sharedDialTimeout = 20 * time.Second

// dialShared connects and receives the shared mount, then clones it,
// waiting at most timeout for each.
func dialShared(sock string, timeout time.Duration) (*sharedRoot, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shared gofer socket: %w", err)
	}
	conn := os.NewFile(uintptr(fd), "shared-gofer")
	// connect(2) waits while the listener's backlog is full (a gofer that
	// no longer accepts: stopped, or frozen with its caller's cgroup) for
	// as long as SO_SNDTIMEO says; unset, for ever, under the lock.
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		conn.Close()
		return nil, fmt.Errorf("shared gofer socket: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		conn.Close()
		return nil, fmt.Errorf("shared gofer socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %w", sock, err)
	}
	// The directory is root's alone; the peer must be root too.
	if cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil || cred.Uid != 0 {
		conn.Close()
		return nil, fmt.Errorf("shared gofer at %s: not served by root (%v)", sock, err)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err == nil && n == 0 {
		err = errors.New("closed unanswered")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("shared gofer: %w", err)
	}
	// Every descriptor received is collected (and closed unless it is the
	// one expected), whatever the number of messages they came in.
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	var fds []int
	for i := range msgs {
		if got, perr := unix.ParseUnixRights(&msgs[i]); perr == nil {
			fds = append(fds, got...)
		}
	}
	if err != nil || len(fds) != 1 {
		for _, f := range fds {
			unix.Close(f)
		}
		conn.Close()
		return nil, fmt.Errorf("shared gofer: no mount received (%v)", err)
	}
	defer unix.Close(fds[0])
	cfd, err := unix.OpenTree(fds[0], "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clone the shared mount: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(cfd, &st); err != nil || st.Type != unix.FUSE_SUPER_MAGIC {
		unix.Close(cfd)
		conn.Close()
		return nil, fmt.Errorf("shared gofer: the mount received is not FUSE (%v)", err)
	}
	s := &sharedRoot{conn: conn, clone: os.NewFile(uintptr(cfd), "shared-root"), done: make(chan struct{})}
	go s.watch()
	return s, nil
}

// watch closes done when the shared gofer goes away (its end closes).
func (s *sharedRoot) watch() {
	buf := make([]byte, 1)
	fd := int(s.conn.Fd())
	var tv unix.Timeval
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if n <= 0 || err != nil {
			close(s.done)
			return
		}
	}
}

// spawnShared makes the shared FUSE superblock and starts its gofer,
// detached from this container: own session, no parent-death signal.
func (b *boot) spawnShared(cfg *config.Config, sock string) error {
	fuse, err := openFuse(1)
	if err != nil {
		return err
	}
	defer closeFiles(fuse)
	fuseFD := int(fuse[0].Fd())
	mnt, err := fuseSuperblock(fuseFD)
	if err != nil {
		return fmt.Errorf("shared root superblock: %w", err)
	}
	mntFile := os.NewFile(uintptr(mnt), "shared-mount")
	defer mntFile.Close()
	_ = os.Remove(sock)
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("shared gofer listener: %w", err)
	}
	listener := os.NewFile(uintptr(lfd), "shared-listener")
	defer listener.Close()
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: sock}); err != nil {
		return fmt.Errorf("bind %s: %w", sock, err)
	}
	if err := unix.Listen(lfd, 64); err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	var d procutil.Donations
	d.Donate("fuse-fd", fuse[0])
	d.Donate("mount-fd", mntFile)
	d.Donate("listen-fd", listener)
	// Its log is its own: it outlives this container, and must hold none
	// of its caller's pipes (a client reading them to EOF would wait).
	logFile, err := os.OpenFile(strings.TrimSuffix(sock, ".sock")+".log", os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	idle, err := cfg.SharedIdle()
	if err != nil {
		return err
	}
	d.Donate("log-fd", logFile)
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: append(append([]string{"moat"}, b.args.Config.ToFlags()...), "gofer", "--shared",
			"--rootfs="+b.plan.Rootfs, "--rootfs-id="+b.sharedImg, "--idle="+strconv.Itoa(int(idle/time.Second))),
		Env:    procutil.TraceEnv(),
		Stderr: logFile,
	}
	d.Transfer(cmd)
	d.Log(b.log, "shared gofer")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start shared gofer: %w", err)
	}
	// Reaped if it ends while boot lives; otherwise by whoever inherits it.
	go func() { _ = cmd.Wait() }()
	return nil
}

// fuseSuperblock makes the read-only FUSE superblock on fuseFD and returns
// a detached mount of it.
func fuseSuperblock(fuseFD int) (int, error) {
	fs, err := unix.Fsopen("fuse", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fs)
	for _, kv := range [][2]string{{"source", "moat"}, {"subtype", "moat"}, {"fd", strconv.Itoa(fuseFD)},
		{"rootmode", "40000"}, {"user_id", "0"}, {"group_id", "0"}} {
		if err := unix.FsconfigSetString(fs, kv[0], kv[1]); err != nil {
			return -1, fmt.Errorf("%s: %w", kv[0], err)
		}
	}
	// default_permissions is mandatory: the kernel does every check.
	for _, f := range []string{"allow_other", "default_permissions", "ro"} {
		if err := unix.FsconfigSetFlag(fs, f); err != nil {
			return -1, fmt.Errorf("%s: %w", f, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create: %w", err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	return mnt, nil
}

// close lets the shared gofer go: the connection ends at once (the
// gofer's count drops now, not when boot exits), and watch has returned
// before its descriptor is closed (a read blocked on it would keep the
// connection open, and one retried after the close could read another
// file that took the number).
func (s *sharedRoot) close() {
	if s == nil {
		return
	}
	if s.clone != nil {
		s.clone.Close()
		s.clone = nil
	}
	_ = unix.Shutdown(int(s.conn.Fd()), unix.SHUT_RDWR) // watch reads EOF
	<-s.done
	s.conn.Close()
}

// sweepShared removes the sockets (and logs) of shared gofers that have
// ended: a jailed gofer cannot remove its own, so the next start of one
// does. A socket is live while /proc/net/unix lists it as listening.
// Precondition: the directory's lock is held.
func sweepShared(dir string) {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return
	}
	live := map[string]bool{}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		// Num RefCount Protocol Flags Type St Inode Path; __SO_ACCEPTCON
		// (0x10000) in Flags marks a listener.
		if len(f) == 8 && f[3] == "00010000" {
			live[f[7]] = true
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if key, ok := strings.CutSuffix(name, ".sock"); ok && !live[filepath.Join(dir, name)] {
			_ = os.Remove(filepath.Join(dir, name))
			_ = os.Remove(filepath.Join(dir, key+".log"))
		}
	}
}
