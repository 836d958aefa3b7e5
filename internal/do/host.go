package do

import (
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/moat-sandbox/moat/internal/config"
)

// Host is what the generated spec depends on outside the flags.
type Host struct {
	UID, GID int
	Home     string
	Hostname string
	// StateRoots are moat's state directories (hidden by default).
	StateRoots []string
	// Submounts are the host's disk file systems below "/" that the gofer
	// serves as trees of their own (it never crosses a mount).
	Submounts []string
	// EmptyFile makes the source that hides a file (asked only when a
	// file is hidden).
	EmptyFile func() (string, error)
}

// CurrentHost reads the facts of this host and caller. stateRoot is the
// state directory in use.
func CurrentHost(stateRoot string) *Host {
	h := &Host{UID: os.Geteuid(), GID: os.Getegid()}
	h.Home = os.Getenv("HOME")
	if !filepath.IsAbs(h.Home) {
		h.Home = ""
		if u, err := user.LookupId(strconv.Itoa(h.UID)); err == nil {
			h.Home = u.HomeDir
		}
	}
	h.Hostname, _ = os.Hostname()
	roots := []string{stateRoot, config.DefaultRoot(false), config.DefaultRoot(true)}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
		roots = append(roots, filepath.Join(x, "moat"))
	}
	for _, r := range roots {
		if r != "" && !contains(h.StateRoots, r) {
			h.StateRoots = append(h.StateRoots, r)
		}
	}
	h.Submounts = diskSubmounts("/proc/self/mountinfo")
	return h
}

// diskFS are the file system types whose mounts below "/" are served
// (kernel interfaces, tmpfs and the like are not host data; nor are other
// runtimes' overlays, which come and go under us).
var diskFS = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true, "zfs": true,
	"f2fs": true, "vfat": true, "exfat": true, "ntfs": true, "ntfs3": true, "fuseblk": true,
	"nfs": true, "nfs4": true, "squashfs": true, "erofs": true, "9p": true,
	"virtiofs": true, "bcachefs": true,
}

// skipUnder are host trees the sandbox gets its own of.
var skipUnder = []string{"/proc", "/sys", "/dev", "/run", "/tmp"}

// diskSubmounts lists the mount points of disk file systems below "/",
// parents first. table is the mount table to read (/proc/self/mountinfo).
func diskSubmounts(table string) []string {
	f, err := os.Open(table)
	if err != nil {
		return nil
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint == "/" || !diskFS[m.FSType] || under(m.Mountpoint, skipUnder), false
	})
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range mounts {
		if contains(out, m.Mountpoint) || !reachable(m.Mountpoint) {
			continue // reachable: the gofer could not serve it either
		}
		out = append(out, m.Mountpoint)
	}
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i]) < depth(out[j]) })
	return out
}

// under reports whether p is one of dirs or lies below one.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") || d == "/" {
			return true
		}
	}
	return false
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
