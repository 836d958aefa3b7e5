package fsys

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// With CacheLong a change made on the host is not seen (documented): the
// image under a read-only root does not change.
func TestCacheLongHidesHostChanges(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "v1")
	m := mountFS(t, src, Options{Cache: CacheLong, ReadOnly: true}, mountOpts{flags: unix.MS_RDONLY})
	if got := readFile(t, m.path("f")); got != "v1" {
		t.Fatalf("read %q", got)
	}
	_, err := os.Stat(m.path("new"))
	wantErrno(t, "stat new", err, unix.ENOENT)
	writeFile(t, filepath.Join(src, "f"), "v2")
	writeFile(t, filepath.Join(src, "new"), "")
	time.Sleep(1500 * time.Millisecond)
	if got := readFile(t, m.path("f")); got != "v1" {
		t.Errorf("CacheLong showed a host change within 1.5s: %q", got)
	}
	_, err = os.Stat(m.path("new"))
	wantErrno(t, "stat new (negative entry cached)", err, unix.ENOENT)
}

// With CacheShort host changes show within about a second.
func TestCacheShortShowsHostChanges(t *testing.T) {
	m := rwMount(t)
	writeFile(t, m.srcPath("f"), "v1")
	os.Mkdir(m.srcPath("d"), 0o755)
	if got := readFile(t, m.path("f")); got != "v1" {
		t.Fatalf("read %q", got)
	}
	os.ReadDir(m.path("d"))
	_, err := os.Stat(m.path("new"))
	wantErrno(t, "stat new", err, unix.ENOENT)
	start := time.Now()
	writeFile(t, m.srcPath("f"), "version 2")
	writeFile(t, m.srcPath("new"), "")
	writeFile(t, m.srcPath("d/entry"), "")
	for {
		f, _ := os.ReadFile(m.path("f"))
		_, errNew := os.Stat(m.path("new"))
		ents, _ := os.ReadDir(m.path("d"))
		if string(f) == "version 2" && errNew == nil && len(ents) == 1 {
			t.Logf("host changes visible after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("after 1.5s: f=%q new=%v dir=%d entries", f, errNew, len(ents))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A warm CacheLong mount answers re-reads, re-lists and re-execs from the
// kernel's caches: no request reaches the server. (Served from another
// process: exec from a mount served by the same process can deadlock it.)
func TestCacheLongWarmIsSilent(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/e"), 0o755)
	for i := range 20 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("d/f%d", i)), fmt.Sprint("data", i))
	}
	bin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true")
	}
	os.WriteFile(filepath.Join(src, "true"), bin, 0o755)
	logPath := filepath.Join(t.TempDir(), "requests.log")
	dir, _ := startHelper(t, src, "long", logPath)
	pass := func() {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() && fi.Name() != "true" {
				readFile(t, p)
			}
			return nil
		})
		if out, err := exec.Command(filepath.Join(dir, "true")).CombinedOutput(); err != nil {
			t.Fatalf("exec from the mount: %v %s", err, out)
		}
	}
	logLines := func() []string {
		b, _ := os.ReadFile(logPath)
		return strings.Split(string(b), "\n")
	}
	pass()
	cold := logLines()
	t.Logf("cold pass: %d OPEN, %d OPENDIR, %d READ, %d LOOKUP, %d READDIRPLUS",
		countOps(cold, "OPEN"), countOps(cold, "OPENDIR"), countOps(cold, "READ"),
		countOps(cold, "LOOKUP"), countOps(cold, "READDIRPLUS"))
	pass()
	warm := logLines()[len(cold)-1:]
	for _, op := range []string{"OPEN", "OPENDIR", "READ", "LOOKUP", "GETATTR", "READDIR", "READDIRPLUS", "FLUSH", "RELEASE", "RELEASEDIR", "READLINK"} {
		if n := countOps(warm, op); n != 0 {
			t.Errorf("warm pass sent %d %s", n, op)
		}
	}
}

// Killing the server makes the mount fail fast, never hang.
func TestServerDeath(t *testing.T) {
	for _, mode := range []string{"short", "long"} {
		t.Run(mode, func(t *testing.T) {
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "f"), string(make([]byte, 1<<20)))
			dir, cmd := startHelper(t, src, mode, "")
			f, err := os.Open(filepath.Join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Read(make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
			cmd.Process.Kill()
			within(t, 5*time.Second, "reap the server", func() error { cmd.Wait(); return nil })
			within(t, 2*time.Second, "operations on a dead mount", func() error {
				_, errStat := os.Stat(filepath.Join(dir, "never-looked-up"))
				_, errRead := f.ReadAt(make([]byte, 4096), 900<<10)
				_, errDir := os.ReadDir(dir)
				for _, err := range []error{errStat, errRead, errDir} {
					if e := errnoOf(err); e != unix.ENOTCONN && e != unix.ECONNABORTED && err != io.EOF {
						return fmt.Errorf("want ENOTCONN/ECONNABORTED, got %v", err)
					}
				}
				return nil
			})
		})
	}
}

// The serving process stays small.
func TestIdleRSS(t *testing.T) {
	src := t.TempDir()
	for i := range 50 {
		d := filepath.Join(src, fmt.Sprint("d", i))
		os.Mkdir(d, 0o755)
		for j := range 100 {
			writeFile(t, filepath.Join(d, fmt.Sprint("f", j)), "x")
		}
	}
	dir, cmd := startHelper(t, src, "long", "")
	idle, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			os.ReadFile(p)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	walked, _ := rssKiB(cmd.Process.Pid)
	t.Logf("server RSS: %d KiB idle, %d KiB after reading 5050 entries", idle, walked)
	if idle > 10<<10 && !raceEnabled {
		t.Errorf("idle RSS %d KiB > 10 MiB", idle)
	}
}

// The server's descriptors stay bounded however many inodes the kernel
// remembers: nodes hold none of their own, the cache keeps fdCacheMax.
func TestDescriptorsBounded(t *testing.T) {
	src := t.TempDir()
	for i := range 40 {
		d := filepath.Join(src, fmt.Sprint("d", i))
		os.Mkdir(d, 0o755)
		for j := range 100 {
			writeFile(t, filepath.Join(d, fmt.Sprint("f", j)), "x")
		}
	}
	m := mountFS(t, src, Options{Cache: CacheLong, ReadOnly: true}, mountOpts{flags: unix.MS_RDONLY})
	before := openFDs(t)
	files := 0
	filepath.Walk(m.dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			readFile(t, p)
			files++
		}
		return nil
	})
	after := openFDs(t)
	t.Logf("read %d files: %d descriptors before, %d after", files, before, after)
	if files != 4000 || after-before > fdCacheMax+32 {
		t.Errorf("%d files read, descriptors grew by %d (cache bound %d)", files, after-before, fdCacheMax)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
