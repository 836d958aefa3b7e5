package fsys

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// While the host swaps a directory and a symlink to a directory outside the
// tree (RENAME_EXCHANGE), clients open, create and list through the mount.
// The server must never open, list or create anything outside: inotify on
// the outside directory must stay silent and the content read must always
// be the inside one.
func TestSwapRace(t *testing.T) {
	src, outside := t.TempDir(), t.TempDir()
	os.Mkdir(filepath.Join(src, "d"), 0o755)
	writeFile(t, filepath.Join(src, "d/f"), "inside")
	writeFile(t, filepath.Join(outside, "f"), "outside")
	if err := os.Symlink(outside, filepath.Join(src, "s")); err != nil {
		t.Fatal(err)
	}
	ino, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ino)
	if _, err := unix.InotifyAddWatch(ino, outside, unix.IN_ALL_EVENTS); err != nil {
		t.Fatal(err)
	}
	m := mountFS(t, src, Options{Cache: CacheShort, zeroTTL: true}, mountOpts{})
	root, err := unix.Open(m.dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)

	var stop atomic.Bool
	var swaps, opens, wrong atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if unix.Renameat2(unix.AT_FDCWD, filepath.Join(src, "d"), unix.AT_FDCWD, filepath.Join(src, "s"), unix.RENAME_EXCHANGE) == nil {
				swaps.Add(1)
			}
		}
	}()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if raceClient(root, w) == "outside" {
					wrong.Add(1)
				}
				opens.Add(1)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	stop.Store(true)
	within(t, 10*time.Second, "race workers", func() error { wg.Wait(); return nil })

	buf := make([]byte, 4096)
	if n, _ := unix.Read(ino, buf); n >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(buf[4:8]) // struct inotify_event: wd, mask, ...
		t.Errorf("something touched the outside directory (inotify mask %#x)", mask)
	}
	if wrong.Load() > 0 {
		t.Errorf("%d reads returned the outside file", wrong.Load())
	}
	if got := readFile(t, filepath.Join(outside, "f")); got != "outside" {
		t.Errorf("outside file changed: %q", got)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside directory has %d entries", len(ents))
	}
	t.Logf("%d swaps, %d client operations", swaps.Load(), opens.Load())
	if swaps.Load() < 100 || opens.Load() < 100 {
		t.Errorf("race too weak: %d swaps, %d operations", swaps.Load(), opens.Load())
	}
}

// raceClient does one operation through the mount, resolving as a client
// whose root is the mount would; it returns what it read, if anything.
func raceClient(root, kind int) string {
	how := &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT}
	switch kind {
	case 0, 1:
		fd, err := unix.Openat2(root, "d/f", how)
		if err != nil {
			return ""
		}
		defer unix.Close(fd)
		buf := make([]byte, 16)
		n, _ := unix.Read(fd, buf)
		return string(buf[:max(n, 0)])
	case 2:
		how.Flags = unix.O_WRONLY | unix.O_CREAT | unix.O_CLOEXEC
		how.Mode = 0o644
		fd, err := unix.Openat2(root, "d/new", how)
		if err == nil {
			unix.Write(fd, []byte("new"))
			unix.Close(fd)
		}
	default:
		how.Flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
		fd, err := unix.Openat2(root, "d", how)
		if err == nil {
			buf := make([]byte, 4096)
			unix.Getdents(fd, buf)
			unix.Close(fd)
		}
	}
	return ""
}
