package seccomp

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// loadDocker reads testdata/docker-default.json, a representative subset of Docker's default
// profile in the form Docker hands to the runtime on x86_64.
func loadDocker(t *testing.T) *specs.LinuxSeccomp {
	t.Helper()
	data, err := os.ReadFile("testdata/docker-default.json")
	if err != nil {
		t.Fatal(err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// sigchld is the exit signal of a fork-like clone.
const sigchld = uint64(unix.SIGCHLD)

func TestDockerProfileTable(t *testing.T) {
	f := compileFor(t, "amd64", loadDocker(t))
	t.Logf("docker subset: %d instructions for %v", len(f.Program), f.Architectures)
	if len(f.Program) > maxInsns {
		t.Fatalf("program has %d instructions", len(f.Program))
	}
	if !slices.Contains(f.Skipped, SkippedSyscall{amd64, "cacheflush"}) ||
		!slices.Contains(f.Skipped, SkippedSyscall{amd64, "socketcall"}) ||
		slices.Contains(f.Skipped, SkippedSyscall{x86, "socketcall"}) {
		t.Errorf("Skipped = %v", f.Skipped)
	}
	eperm, enosys := retErrno(unix.EPERM), retErrno(unix.ENOSYS)
	threadFlags := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_SETTLS)
	rows := []expect{
		{sys(t, amd64, "read"), retAllow},
		{sys(t, amd64, "clone", threadFlags), retAllow},
		{sys(t, amd64, "clone", sigchld), retAllow},
		{sys(t, amd64, "clone", unix.CLONE_NEWUSER|sigchld), eperm},
		{sys(t, amd64, "clone", unix.CLONE_NEWNET), eperm},
		{sys(t, amd64, "clone", 1<<32|sigchld), retAllow}, // mask has no high bits
		{sys(t, amd64, "clone3"), enosys},
		{sys(t, amd64, "socket", unix.AF_UNIX), retAllow},
		{sys(t, amd64, "socket", unix.AF_VSOCK), eperm},
		{sys(t, amd64, "socket", 1<<32|unix.AF_VSOCK), retAllow}, // 64-bit compare, as libseccomp
		{sys(t, amd64, "personality", 0), retAllow},
		{sys(t, amd64, "personality", 8), retAllow},
		{sys(t, amd64, "personality", 0xffffffff), retAllow},
		{sys(t, amd64, "personality", 4), eperm},
		{sys(t, amd64, "unshare", unix.CLONE_NEWUSER), eperm},
		{sys(t, amd64, "mount"), eperm},
		{sys(t, amd64, "arch_prctl"), retAllow},
		{call{arch: amd64, nr: 1000}, enosys},
		{sys(t, x86, "socketcall"), retAllow},
		{sys(t, x86, "clone", unix.CLONE_NEWUSER), eperm},
		{sys(t, x86, "clone", 1<<32|unix.CLONE_NEWUSER), eperm}, // 32-bit ABI: low half only
		{sys(t, x86, "personality", 0xffffffff), retAllow},
		{sys(t, x86, "mmap2"), retAllow},
		{sys(t, x32, "read"), retAllow},
		{sys(t, x32, "ioctl"), retAllow},
		{sys(t, x32, "clone", unix.CLONE_NEWPID), eperm},
		{sys(t, arm64, "read"), retKillProcess},
	}
	checkTable(t, f, rows)
}

// TestDockerProfileNativeLength compiles the profile for every native architecture.
func TestDockerProfileNativeLength(t *testing.T) {
	for _, goarch := range []string{"amd64", "386", "arm64", "arm"} {
		f := compileFor(t, goarch, loadDocker(t))
		if len(f.Program) > maxInsns {
			t.Errorf("%s: %d instructions", goarch, len(f.Program))
		}
	}
}

func TestKernelDockerExecTrue(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true")
	}
	r := runChild(t, childCase{Profile: *loadDocker(t), Mode: "exec", Exec: []string{"/bin/true"}})
	if !r.ws.Exited() || r.ws.ExitStatus() != 0 {
		t.Errorf("/bin/true under the docker profile: %v; stdout %q stderr:\n%s", r.ws, r.stdout, r.stderr)
	}
}

func TestKernelDockerSyscalls(t *testing.T) {
	p := *loadDocker(t)
	cases := []struct {
		name string
		args [6]uint64
		want unix.Errno
	}{
		{"clone3", [6]uint64{}, unix.ENOSYS},
		{"unshare", [6]uint64{unix.CLONE_NEWUSER}, unix.EPERM},
		{"socket", [6]uint64{unix.AF_VSOCK, unix.SOCK_STREAM}, unix.EPERM},
		{"socket", [6]uint64{unix.AF_UNIX, unix.SOCK_STREAM}, 0},
		{"personality", [6]uint64{0xffffffff}, 0},
		{"personality", [6]uint64{4}, unix.EPERM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectErrno(t, childCase{Profile: p, Nr: nativeNr(t, tc.name), Args: tc.args}, tc.want)
		})
	}
}
