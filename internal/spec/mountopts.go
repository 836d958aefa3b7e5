package spec

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ConfigFilename is the bundle's configuration file.
const ConfigFilename = "config.json"

// MountOptions is a spec mount's option list decoded into what the kernel
// takes: mount(2) flags, propagation changes applied afterwards, recursive
// attributes applied with mount_setattr(2), and the filesystem's data string.
type MountOptions struct {
	Flags       uintptr   // MS_* flags for mount(2)
	Clear       uintptr   // flags the options explicitly turn off (rw, suid, ...)
	Propagation []uintptr // MS_SHARED, MS_SLAVE|MS_REC, ...
	RecAttrSet  uint64    // MOUNT_ATTR_* set recursively ("rro", "rnosuid", ...)
	RecAttrClr  uint64    // MOUNT_ATTR_* cleared recursively ("rrw", "rsuid", ...)
	Data        []string  // filesystem-specific options, passed as data
	// TmpCopyUp (runc's "tmpcopyup", which Podman gives --read-only's
	// tmpfs mounts): a tmpfs starts with a copy of what the destination
	// held in the image.
	TmpCopyUp bool
	// Optional ("x-moat-optional"): a bind mount whose source is gone by
	// the time it is mounted is left out instead of failing the container
	// (moat do's host submounts, which come and go with the host).
	Optional bool
}

// OptionalMount is the option that makes a bind mount Optional.
const OptionalMount = "x-moat-optional"

// flagOption: set or clear a mount(2) flag.
type flagOption struct {
	clear bool
	flag  uintptr
}

var flagOptions = map[string]flagOption{
	"async": {true, unix.MS_SYNCHRONOUS}, "atime": {true, unix.MS_NOATIME},
	"bind": {false, unix.MS_BIND}, "defaults": {false, 0},
	"dev": {true, unix.MS_NODEV}, "diratime": {true, unix.MS_NODIRATIME},
	"dirsync": {false, unix.MS_DIRSYNC}, "exec": {true, unix.MS_NOEXEC},
	"iversion": {false, unix.MS_I_VERSION}, "lazytime": {false, unix.MS_LAZYTIME},
	"loud": {true, unix.MS_SILENT}, "mand": {false, unix.MS_MANDLOCK},
	"noatime": {false, unix.MS_NOATIME}, "nodev": {false, unix.MS_NODEV},
	"nodiratime": {false, unix.MS_NODIRATIME}, "noexec": {false, unix.MS_NOEXEC},
	"noiversion": {true, unix.MS_I_VERSION}, "nolazytime": {true, unix.MS_LAZYTIME},
	"nomand": {true, unix.MS_MANDLOCK}, "norelatime": {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME}, "nosuid": {false, unix.MS_NOSUID},
	"nosymfollow": {false, unix.MS_NOSYMFOLLOW}, "symfollow": {true, unix.MS_NOSYMFOLLOW},
	"rbind": {false, unix.MS_BIND | unix.MS_REC}, "relatime": {false, unix.MS_RELATIME},
	"remount": {false, unix.MS_REMOUNT}, "ro": {false, unix.MS_RDONLY},
	"rw": {true, unix.MS_RDONLY}, "silent": {false, unix.MS_SILENT},
	"strictatime": {false, unix.MS_STRICTATIME}, "suid": {true, unix.MS_NOSUID},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

var propagationOptions = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// recursive attributes: option -> (attribute, clear?)
var recAttrOptions = map[string]struct {
	attr  uint64
	clear bool
}{
	"rro": {unix.MOUNT_ATTR_RDONLY, false}, "rrw": {unix.MOUNT_ATTR_RDONLY, true},
	"rnosuid": {unix.MOUNT_ATTR_NOSUID, false}, "rsuid": {unix.MOUNT_ATTR_NOSUID, true},
	"rnodev": {unix.MOUNT_ATTR_NODEV, false}, "rdev": {unix.MOUNT_ATTR_NODEV, true},
	"rnoexec": {unix.MOUNT_ATTR_NOEXEC, false}, "rexec": {unix.MOUNT_ATTR_NOEXEC, true},
	"rnodiratime": {unix.MOUNT_ATTR_NODIRATIME, false}, "rdiratime": {unix.MOUNT_ATTR_NODIRATIME, true},
	"rnosymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, false}, "rsymfollow": {unix.MOUNT_ATTR_NOSYMFOLLOW, true},
	"rnoatime": {unix.MOUNT_ATTR_NOATIME, false}, "rstrictatime": {unix.MOUNT_ATTR_STRICTATIME, false},
	"rrelatime": {unix.MOUNT_ATTR_RELATIME, false},
}

// ParseMountOptions decodes a spec mount's options. Unknown options are
// filesystem data (as mount(8) passes them), except a few that look like
// flags moat does not support, which are refused by name.
func ParseMountOptions(opts []string) (*MountOptions, error) {
	mo := &MountOptions{}
	for _, o := range opts {
		if f, ok := flagOptions[o]; ok {
			if f.clear {
				mo.Flags &^= f.flag
				mo.Clear |= f.flag
			} else {
				mo.Flags |= f.flag
				mo.Clear &^= f.flag
			}
			continue
		}
		if p, ok := propagationOptions[o]; ok {
			mo.Propagation = append(mo.Propagation, p)
			continue
		}
		if r, ok := recAttrOptions[o]; ok {
			// The last of a contradicting pair wins, as for plain flags.
			if r.clear {
				mo.RecAttrClr |= r.attr
				mo.RecAttrSet &^= r.attr
			} else {
				mo.RecAttrSet |= r.attr
				mo.RecAttrClr &^= r.attr
			}
			continue
		}
		switch {
		case o == "idmap" || o == "ridmap" || strings.HasPrefix(o, "idmap="):
			return nil, fmt.Errorf("option %q: id-mapped mounts are not supported by moat", o)
		case o == "tmpcopyup":
			mo.TmpCopyUp = true
		case o == OptionalMount:
			mo.Optional = true
		case strings.HasPrefix(o, "x-"):
			// userspace-only options (mount(8) convention): ignored
		case o == "":
		default:
			mo.Data = append(mo.Data, o)
		}
	}
	return mo, nil
}

// DataString joins the filesystem data options.
func (mo *MountOptions) DataString() string { return strings.Join(mo.Data, ",") }

// MountOptionNames lists every mount option moat recognises (for features).
func MountOptionNames() []string {
	var out []string
	for n := range flagOptions {
		out = append(out, n)
	}
	for n := range propagationOptions {
		out = append(out, n)
	}
	for n := range recAttrOptions {
		out = append(out, n)
	}
	out = append(out, "tmpcopyup")
	sort.Strings(out)
	return out
}
