package spec

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func mustParse(t *testing.T, opts ...string) *MountOptions {
	t.Helper()
	mo, err := ParseMountOptions(opts)
	if err != nil {
		t.Fatalf("ParseMountOptions(%q): %v", opts, err)
	}
	return mo
}

func TestMountFlagsSetAndCleared(t *testing.T) {
	mo := mustParse(t, "ro", "rw")
	if mo.Flags&unix.MS_RDONLY != 0 || mo.Clear&unix.MS_RDONLY == 0 {
		t.Errorf("ro,rw: flags %#x clear %#x; want read-write with RDONLY cleared", mo.Flags, mo.Clear)
	}
	mo = mustParse(t, "rw", "ro")
	if mo.Flags&unix.MS_RDONLY == 0 || mo.Clear&unix.MS_RDONLY != 0 {
		t.Errorf("rw,ro: flags %#x clear %#x; want read-only", mo.Flags, mo.Clear)
	}
	mo = mustParse(t, "nosuid", "nodev", "noexec", "noatime", "bind", "suid")
	want := uintptr(unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_BIND)
	if mo.Flags != want || mo.Clear != unix.MS_NOSUID {
		t.Errorf("flags %#x clear %#x; want %#x / %#x", mo.Flags, mo.Clear, want, uintptr(unix.MS_NOSUID))
	}
	if mo := mustParse(t, "rbind"); mo.Flags != unix.MS_BIND|unix.MS_REC {
		t.Errorf("rbind: flags %#x", mo.Flags)
	}
	if mo := mustParse(t, "defaults"); mo.Flags != 0 || mo.Clear != 0 || len(mo.Data) != 0 {
		t.Errorf("defaults: %+v", mo)
	}
	for opt, flag := range map[string]uintptr{
		"sync": unix.MS_SYNCHRONOUS, "dirsync": unix.MS_DIRSYNC, "mand": unix.MS_MANDLOCK, "nodiratime": unix.MS_NODIRATIME,
		"relatime": unix.MS_RELATIME, "strictatime": unix.MS_STRICTATIME, "remount": unix.MS_REMOUNT,
		"silent": unix.MS_SILENT, "nosymfollow": unix.MS_NOSYMFOLLOW, "lazytime": unix.MS_LAZYTIME, "iversion": unix.MS_I_VERSION,
	} {
		if mo := mustParse(t, opt); mo.Flags != flag {
			t.Errorf("%s: flags %#x, want %#x", opt, mo.Flags, flag)
		}
	}
	for opt, flag := range map[string]uintptr{
		"async": unix.MS_SYNCHRONOUS, "atime": unix.MS_NOATIME, "dev": unix.MS_NODEV, "exec": unix.MS_NOEXEC,
		"diratime": unix.MS_NODIRATIME, "loud": unix.MS_SILENT, "nomand": unix.MS_MANDLOCK, "norelatime": unix.MS_RELATIME,
		"nostrictatime": unix.MS_STRICTATIME, "symfollow": unix.MS_NOSYMFOLLOW, "nolazytime": unix.MS_LAZYTIME,
		"noiversion": unix.MS_I_VERSION,
	} {
		if mo := mustParse(t, opt); mo.Flags != 0 || mo.Clear != flag {
			t.Errorf("%s: flags %#x clear %#x, want clear %#x", opt, mo.Flags, mo.Clear, flag)
		}
	}
}

func TestMountPropagation(t *testing.T) {
	mo := mustParse(t, "rprivate", "bind", "shared", "rslave", "unbindable")
	want := []uintptr{unix.MS_PRIVATE | unix.MS_REC, unix.MS_SHARED, unix.MS_SLAVE | unix.MS_REC, unix.MS_UNBINDABLE}
	if !reflect.DeepEqual(mo.Propagation, want) {
		t.Errorf("propagation %#x, want %#x (in order)", mo.Propagation, want)
	}
	if mo.Flags != unix.MS_BIND {
		t.Errorf("propagation leaked into flags: %#x", mo.Flags)
	}
	if len(mustParse(t, "ro").Propagation) != 0 {
		t.Error("propagation without propagation options")
	}
}

func TestMountRecursiveAttrs(t *testing.T) {
	mo := mustParse(t, "rro", "rnosuid", "rnodev", "rnoexec", "rexec", "rnoatime")
	set := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOATIME)
	if mo.RecAttrSet != set {
		t.Errorf("set %#x, want %#x (rexec after rnoexec wins)", mo.RecAttrSet, set)
	}
	if mo.RecAttrClr != unix.MOUNT_ATTR_NOEXEC {
		t.Errorf("rexec not cleared: %#x", mo.RecAttrClr)
	}
	if mo.Flags != 0 {
		t.Errorf("recursive attributes leaked into mount flags: %#x", mo.Flags)
	}
	mo = mustParse(t, "rrw", "rsuid", "rdev", "rsymfollow", "rdiratime")
	if mo.RecAttrSet != 0 || mo.RecAttrClr != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSYMFOLLOW|unix.MOUNT_ATTR_NODIRATIME {
		t.Errorf("clearing options: set %#x clr %#x", mo.RecAttrSet, mo.RecAttrClr)
	}
}

// The recursive attributes follow the same "last one wins" rule as the
// plain flags (ro,rw is read-write; so is rro,rrw), as in runc.
// mount_setattr(2) accepts a bit in both attr_set and attr_clr and applies
// the set after the clear (checked on 6.18), so a bit left in both is "set".
func TestMountRecursiveAttrsLastWins(t *testing.T) {
	mo := mustParse(t, "rro", "rrw")
	if mo.RecAttrSet&unix.MOUNT_ATTR_RDONLY != 0 {
		t.Errorf("rro,rrw: RDONLY still in attr_set (%#x, clr %#x): the mount would end up read-only", mo.RecAttrSet, mo.RecAttrClr)
	}
	mo = mustParse(t, "rrw", "rro")
	if mo.RecAttrSet&unix.MOUNT_ATTR_RDONLY == 0 {
		t.Errorf("rrw,rro: set %#x clr %#x; want RDONLY set", mo.RecAttrSet, mo.RecAttrClr)
	}
}

func TestMountDataOptions(t *testing.T) {
	mo := mustParse(t, "nosuid", "mode=755", "", "size=65536k", "x-systemd.automount", "x-mount.mkdir=0755", "newinstance")
	if want := []string{"mode=755", "size=65536k", "newinstance"}; !reflect.DeepEqual(mo.Data, want) {
		t.Errorf("data %q, want %q", mo.Data, want)
	}
	if got := mo.DataString(); got != "mode=755,size=65536k,newinstance" {
		t.Errorf("DataString = %q", got)
	}
	if got := mustParse(t, "ro").DataString(); got != "" {
		t.Errorf("DataString without data = %q", got)
	}
	if mo, err := ParseMountOptions(nil); err != nil || mo.Flags != 0 || len(mo.Data) != 0 {
		t.Errorf("no options: %+v, %v", mo, err)
	}
}

func TestMountOptionsRefused(t *testing.T) {
	for _, o := range []string{"idmap", "ridmap", "idmap=uids=0-1000-10;gids=0-1000-10"} {
		_, err := ParseMountOptions([]string{"rbind", o})
		if err == nil || !strings.Contains(err.Error(), o) {
			t.Errorf("%q: %v", o, err)
		}
	}
}

func TestMountOptionNames(t *testing.T) {
	names := MountOptionNames()
	if !sort.StringsAreSorted(names) {
		t.Errorf("not sorted: %q", names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Errorf("%q listed twice", n)
		}
		seen[n] = true
		if _, err := ParseMountOptions([]string{n}); err != nil {
			t.Errorf("listed option %q is refused: %v", n, err)
		}
	}
	if want := len(flagOptions) + len(propagationOptions) + len(recAttrOptions) + 1; len(names) != want {
		t.Errorf("%d names, want %d", len(names), want)
	}
	for _, n := range []string{"ro", "rw", "bind", "rbind", "nosuid", "rprivate", "rshared", "rro", "rnoexec", "nosymfollow", "strictatime"} {
		if !seen[n] {
			t.Errorf("%q missing", n)
		}
	}
	// Every listed name is understood as an option, not passed as data.
	for _, n := range names {
		if mo := mustParse(t, n); len(mo.Data) != 0 {
			t.Errorf("listed option %q treated as data", n)
		}
	}
	if !mustParse(t, "tmpcopyup").TmpCopyUp {
		t.Error("tmpcopyup not understood")
	}
	for _, n := range []string{"idmap", "mode=755"} {
		if seen[n] {
			t.Errorf("%q must not be listed", n)
		}
	}
}

func TestCapabilityByName(t *testing.T) {
	for name, want := range map[string]int{
		"CAP_CHOWN": unix.CAP_CHOWN, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
		"CAP_SETFCAP": unix.CAP_SETFCAP, "CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF,
		"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	} {
		if got, ok := CapabilityByName(name); !ok || got != want {
			t.Errorf("CapabilityByName(%s) = %d, %v; want %d", name, got, ok, want)
		}
	}
	for _, bad := range []string{"", "chown", "CHOWN", "cap_chown", "CAP_FLY"} {
		if _, ok := CapabilityByName(bad); ok {
			t.Errorf("CapabilityByName(%q) accepted", bad)
		}
	}
	names := CapabilityNames()
	if len(names) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capability names, want %d", len(names), unix.CAP_LAST_CAP+1)
	}
	for i, n := range names {
		if c, _ := CapabilityByName(n); c != i {
			t.Errorf("CapabilityNames()[%d] = %s (number %d): not sorted by number", i, n, c)
		}
	}
}

func TestRlimitByName(t *testing.T) {
	for name, want := range map[string]int{
		"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_NPROC": unix.RLIMIT_NPROC,
		"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_STACK": unix.RLIMIT_STACK,
	} {
		if got, ok := RlimitByName(name); !ok || got != want {
			t.Errorf("RlimitByName(%s) = %d, %v; want %d", name, got, ok, want)
		}
	}
	for _, bad := range []string{"", "NOFILE", "rlimit_nofile", "RLIMIT_FOO"} {
		if _, ok := RlimitByName(bad); ok {
			t.Errorf("RlimitByName(%q) accepted", bad)
		}
	}
	if len(rlimits) != 16 {
		t.Errorf("%d rlimits known, want the 16 Linux ones", len(rlimits))
	}
}
