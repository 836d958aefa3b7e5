package fsys

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Benchmarks: native vs FUSE with CacheLong (read-only image settings) vs
// CacheShort (read-write bind mount settings), warm: each mount is walked
// once before timing. Run with
//
//	go test -run '^$' -bench . -benchtime 5x ./internal/gofer/fsys/
//
// The FUSE server runs in the benchmark process, on the same cores as the
// client, as the gofer does next to the container.

const (
	benchDirs      = 200 // × benchFilesPerDir files: ~20k entries to walk
	benchFilesPer  = 100
	benchSmall     = 2000 // small files to open and read
	benchSeqSize   = 256 << 20
	benchSeqBuffer = 1 << 20
)

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// benchFixture builds, once per process, the trees the benchmarks read.
func benchFixture(b *testing.B) string {
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "moat-fsys-bench-")
		if fixtureErr == nil {
			fixtureErr = buildFixture(fixtureDir)
		}
	})
	if fixtureErr != nil {
		b.Fatal(fixtureErr)
	}
	return fixtureDir
}

func buildFixture(dir string) error {
	for d := range benchDirs {
		sub := filepath.Join(dir, "walk", fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		for f := range benchFilesPer {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d", f)), nil, 0o644); err != nil {
				return err
			}
		}
	}
	small := filepath.Join(dir, "small")
	os.MkdirAll(small, 0o755)
	for i := range benchSmall {
		data := bytes.Repeat([]byte{byte(i)}, 512+(i%8)*1024)
		if err := os.WriteFile(filepath.Join(small, fmt.Sprintf("s%04d", i)), data, 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(filepath.Join(dir, "seq"))
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("moat-seq"), benchSeqBuffer/8)
	for range benchSeqSize / benchSeqBuffer {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

type benchConfig struct {
	name string
	opts *Options // nil: native
}

func benchConfigs() []benchConfig {
	return []benchConfig{
		{"native", nil},
		{"long", &Options{Cache: CacheLong, ReadOnly: true}},
		{"long-open", &Options{Cache: CacheLong, ReadOnly: true, openMode: openAlways}},
		{"long-passthrough", &Options{Cache: CacheLong, ReadOnly: true, Passthrough: true, openMode: openAlways}},
		{"short", &Options{Cache: CacheShort}},
		{"short-passthrough", &Options{Cache: CacheShort, Passthrough: true}},
	}
}

// benchRoot returns the directory to work in for one configuration.
func benchRoot(b *testing.B, c benchConfig) string {
	src := benchFixture(b)
	if c.opts == nil {
		return src
	}
	var flags uintptr
	if c.opts.ReadOnly {
		flags = unix.MS_RDONLY
	}
	return mountFS(b, src, *c.opts, mountOpts{flags: flags}).dir
}

func runBench(b *testing.B, work func(b *testing.B, root string) int64) {
	for _, c := range benchConfigs() {
		b.Run(c.name, func(b *testing.B) {
			root := benchRoot(b, c)
			n := work(b, root) // warm-up
			b.SetBytes(n)
			b.ResetTimer()
			for range b.N {
				work(b, root)
			}
		})
	}
}

func BenchmarkLstatWalk(b *testing.B) {
	runBench(b, func(b *testing.B, root string) int64 {
		n := lstatWalk(b, filepath.Join(root, "walk"))
		if n != benchDirs*(benchFilesPer+1) {
			b.Fatalf("walked %d entries", n)
		}
		return 0
	})
}

// lstatWalk lstats every entry below dir, with raw system calls.
func lstatWalk(b *testing.B, dir string) int {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	buf := make([]byte, 32<<10)
	for {
		r, err := unix.Getdents(fd, buf)
		if err != nil {
			b.Fatal(err)
		}
		if r == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:r], -1, names)
	}
	unix.Close(fd)
	count := 0
	for _, name := range names {
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			b.Fatal(err)
		}
		count++
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			count += lstatWalk(b, p)
		}
	}
	return count
}

func BenchmarkSmallFiles(b *testing.B) {
	buf := make([]byte, 16<<10)
	runBench(b, func(b *testing.B, root string) int64 {
		var total int64
		for i := range benchSmall {
			fd, err := unix.Open(fmt.Sprintf("%s/small/s%04d", root, i), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			for {
				r, err := unix.Read(fd, buf)
				if err != nil {
					b.Fatal(err)
				}
				if r == 0 {
					break
				}
				total += int64(r)
			}
			unix.Close(fd)
		}
		return total
	})
}

func BenchmarkSeqRead(b *testing.B) {
	buf := make([]byte, benchSeqBuffer)
	runBench(b, func(b *testing.B, root string) int64 {
		fd, err := unix.Open(root+"/seq", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Close(fd)
		var total int64
		for {
			r, err := unix.Read(fd, buf)
			if err != nil {
				b.Fatal(err)
			}
			if r == 0 {
				return total
			}
			total += int64(r)
		}
	})
}
