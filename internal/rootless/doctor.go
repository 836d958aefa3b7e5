package rootless

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/cgroup"
)

// Check is one diagnosis of `moat doctor`.
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"` // moat cannot run rootless without it
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// Diagnose runs every check for the calling user. self is the path of the
// moat binary (for the probes that need a child process).
func Diagnose(self string) []Check {
	return []Check{
		checkUserNS(self),
		checkSubIDs("/etc/subuid", os.Geteuid(), "uid"),
		checkSubIDs("/etc/subgid", os.Getegid(), "gid"),
		checkHelper("newuidmap"),
		checkHelper("newgidmap"),
		checkDevice("/dev/fuse", "the gofer's file server (FUSE)", "--file-access=direct"),
		checkDevice("/dev/net/tun", "the sandbox network (--network=sandbox)", "--network=none or host"),
		checkCgroups(),
		checkOverlay(self),
		checkSeccomp(),
		checkPidfd(),
	}
}

func sysctl(name string) (string, bool) {
	data, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(data)), true
}

func checkUserNS(self string) Check {
	c := Check{Name: "user namespaces", Required: true}
	if v, ok := sysctl("user.max_user_namespaces"); ok && v == "0" {
		c.Detail = "user.max_user_namespaces is 0"
		c.Fix = "sysctl -w user.max_user_namespaces=15000"
		return c
	}
	if v, ok := sysctl("kernel.unprivileged_userns_clone"); ok && v == "0" {
		c.Detail = "kernel.unprivileged_userns_clone is 0"
		c.Fix = "sysctl -w kernel.unprivileged_userns_clone=1"
		return c
	}
	cmd := exec.Command(self, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	if err := runBounded(cmd); err != nil {
		c.Detail = "creating a user namespace failed: " + err.Error()
		if v, ok := sysctl("kernel.apparmor_restrict_unprivileged_userns"); ok && v == "1" {
			c.Detail += " (Ubuntu's kernel.apparmor_restrict_unprivileged_userns is 1)"
			c.Fix = "give moat an AppArmor profile with 'userns,' or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
		} else {
			c.Fix = "allow unprivileged user namespaces in the kernel (see your distribution's documentation)"
		}
		return c
	}
	c.OK, c.Detail = true, "an unprivileged user namespace can be created"
	return c
}

func checkSubIDs(file string, id int, kind string) Check {
	c := Check{Name: "subordinate " + kind + "s (" + file + ")"}
	r := subRanges(file, id)
	if os.Geteuid() == 0 {
		c.OK, c.Detail = true, "not needed as root"
		return c
	}
	if len(r) == 0 {
		c.Detail = "no range for this user: containers get a single-ID map (only container " + kind + " 0)"
		c.Fix = fmt.Sprintf("usermod --add-sub%ss 100000-165535 $USER", kind)
		return c
	}
	c.OK, c.Detail = true, fmt.Sprintf("%d ids from %d", r[0].count, r[0].start)
	return c
}

func checkHelper(name string) Check {
	c := Check{Name: name}
	p, err := exec.LookPath(name)
	if err != nil {
		c.Detail = "not installed: subordinate ranges cannot be mapped"
		c.Fix = "apt-get install uidmap (or your distribution's shadow-utils)"
		return c
	}
	st, err := os.Stat(p)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	caps, _ := unix.Getxattr(p, "security.capability", make([]byte, 64))
	switch {
	case st.Mode()&os.ModeSetuid != 0:
		c.OK, c.Detail = true, p+" is setuid root"
	case caps > 0:
		c.OK, c.Detail = true, p+" has file capabilities"
	default:
		c.Detail = p + " is neither setuid nor has file capabilities"
		c.Fix = "chmod u+s " + p + " (or setcap cap_setuid,cap_setgid+ep " + p + ")"
	}
	return c
}

func checkDevice(path, use, alternative string) Check {
	c := Check{Name: path}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		c.Detail = fmt.Sprintf("cannot open for %s: %v", use, err)
		c.Fix = "chmod 0666 " + path + " (or use " + alternative + ")"
		return c
	}
	f.Close()
	c.OK, c.Detail = true, "usable for "+use
	return c
}

// checkCgroups looks for a cgroup this user may write: on cgroup v2 the
// user's own cgroup, delegated (systemd does for user sessions).
func checkCgroups() Check {
	c := Check{Name: "cgroup delegation"}
	if os.Geteuid() == 0 && !InUserNS() {
		c.OK, c.Detail = true, "root: cgroups are writable"
		return c
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		c.Detail = cgroup.NoV2Reason + "; containers run without resource limits"
		c.Fix = cgroup.NoV2Fix
		return c
	}
	data, _ := os.ReadFile("/proc/self/cgroup")
	rel := strings.TrimPrefix(strings.TrimSpace(string(data)), "0::")
	dir := filepath.Join("/sys/fs/cgroup", rel)
	if unix.Access(dir, unix.W_OK) != nil {
		c.Detail = dir + " " + cgroup.NoDelegation + ": containers run without resource limits"
		c.Fix = cgroup.DelegationFix
		return c
	}
	ctl, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	c.OK, c.Detail = true, fmt.Sprintf("%s is writable (controllers: %s)", dir, strings.TrimSpace(string(ctl)))
	return c
}

// checkOverlay mounts an overlay in a new user and mount namespace, as the
// gofer's default root does (with userxattr).
func checkOverlay(self string) Check {
	c := Check{Name: "overlayfs in a user namespace"}
	cmd := exec.Command(self, "doctor", "--probe-overlay")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
	if os.Geteuid() == 0 && !InUserNS() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	}
	out, err := runBoundedOutput(cmd)
	if err != nil {
		c.Detail = "overlay mount failed: " + strings.TrimSpace(out+" "+err.Error())
		c.Fix = "use a kernel >= 5.11, or --overlay=none"
		return c
	}
	c.OK, c.Detail = true, "overlay with userxattr mounts"
	return c
}

// ProbeOverlay is `moat doctor --probe-overlay`, run in new namespaces.
func ProbeOverlay() error {
	dir, err := os.MkdirTemp("", "moat-doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		return fmt.Errorf("tmpfs: %w", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work", dir, dir, dir)
	if InUserNS() {
		opts += ",userxattr"
	}
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", 0, opts); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	return unix.Unmount(filepath.Join(dir, "merged"), 0)
}

func checkSeccomp() Check {
	c := Check{Name: "seccomp", Required: true}
	data, _ := os.ReadFile("/proc/self/status")
	if !strings.Contains(string(data), "Seccomp:") {
		c.Detail = "the kernel has no seccomp"
		c.Fix = "use a kernel built with CONFIG_SECCOMP_FILTER"
		return c
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, 2 /* SECCOMP_GET_ACTION_AVAIL */, 0,
		uintptr(unsafe.Pointer(&killProcess))); errno != 0 {
		c.Detail = "seccomp filters unavailable: " + errno.Error()
		return c
	}
	c.OK, c.Detail = true, "seccomp filters available"
	return c
}

func checkPidfd() Check {
	c := Check{Name: "pidfd", Required: true}
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		c.Detail = "pidfd_open failed: " + err.Error()
		c.Fix = "use a kernel >= 5.3"
		return c
	}
	unix.Close(fd)
	c.OK, c.Detail = true, "pidfd_open works"
	return c
}

func runBounded(cmd *exec.Cmd) error {
	_, err := runBoundedOutput(cmd)
	return err
}

func runBoundedOutput(cmd *exec.Cmd) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("timed out")
	}
}

var killProcess = uint32(0x80000000) // SECCOMP_RET_KILL_PROCESS

// Summary is the exit status rule: non-zero when a required check fails.
func Summary(checks []Check) (failedRequired int) {
	for _, c := range checks {
		if !c.OK && c.Required {
			failedRequired++
		}
	}
	return failedRequired
}
