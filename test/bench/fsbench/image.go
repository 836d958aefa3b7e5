package main

// The benchmark image: a copy of this Debian host's own installation, not a download.
//
//	IMAGE_DIR/rootfs/
//	  usr/              host /usr (GNU tar, owners, modes, xattrs, hard links kept), minus /usr/local
//	  etc/              host /etc minus secrets (see etcExcludes)
//	  bin sbin lib lib64 ...  as on the host (merged-/usr symlinks)
//	  dev proc sys tmp run root var/tmp home mnt   empty mount points / directories
//	  data/big          BIG_MIB MiB of pseudo-random bytes (seqread)
//	  bench/fsbench     this binary (static), the in-container helper
//	  bench/src/        the compile workload's sources
//	  .fsbench-image    JSON: when and how it was made, its size
//
// It is built once (into rootfs.partial, renamed when complete) and reused while
// .fsbench-image exists; delete IMAGE_DIR to rebuild. bench/ is refreshed on every run.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moat-sandbox/moat/test/bench/benchrt"
)

const imageVersion = 1

type imageInfo struct {
	Version   int       `json:"version"`
	Created   time.Time `json:"created"`
	Source    string    `json:"source"`
	Entries   int64     `json:"entries"`
	Bytes     int64     `json:"bytes"` // allocated bytes (st_blocks), like du
	BigMiB    int       `json:"big_mib"`
	BuildSecs float64   `json:"build_seconds"`
}

// etcExcludes: files in /etc that hold secrets (or site credentials); anchored tar patterns.
var etcExcludes = []string{
	"etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-",
	"etc/ssh/ssh_host_*", "etc/ssl/private/*", "etc/security/opasswd",
	"etc/pip.conf", "etc/npmrc", "etc/gitconfig", "etc/.pwd.lock",
}

func imageReady(rootfs string) (*imageInfo, bool) {
	data, err := os.ReadFile(filepath.Join(rootfs, ".fsbench-image"))
	if err != nil {
		return nil, false
	}
	var info imageInfo
	if json.Unmarshal(data, &info) != nil || info.Version != imageVersion {
		return nil, false
	}
	return &info, true
}

// ensureImage builds the image if needed and refreshes /bench; returns the rootfs path.
func ensureImage(dir string, bigMiB int) (string, *imageInfo, error) {
	rootfs := filepath.Join(dir, "rootfs")
	info, ok := imageReady(rootfs)
	if ok && info.BigMiB != bigMiB {
		logf("image: %s has a %d MiB /data/big; rewriting it with %d MiB", rootfs, info.BigMiB, bigMiB)
		if err := writeBig(filepath.Join(rootfs, "data", "big"), bigMiB); err != nil {
			return "", nil, err
		}
		info.BigMiB = bigMiB
		if err := writeInfo(rootfs, info); err != nil {
			return "", nil, err
		}
	}
	if !ok {
		var err error
		if info, err = buildImage(dir, rootfs, bigMiB); err != nil {
			return "", nil, err
		}
	}
	if err := refreshBench(rootfs); err != nil {
		return "", nil, err
	}
	return rootfs, info, nil
}

func writeInfo(rootfs string, info *imageInfo) error {
	data, _ := json.MarshalIndent(info, "", "  ")
	return os.WriteFile(filepath.Join(rootfs, ".fsbench-image"), append(data, '\n'), 0o644)
}

func buildImage(dir, rootfs string, bigMiB int) (*imageInfo, error) {
	t0 := time.Now()
	part := rootfs + ".partial"
	logf("image: building %s from this host's /usr and /etc (one-time; a few minutes)", rootfs)
	if err := os.RemoveAll(part); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(part, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(part, 0o755); err != nil {
		return nil, err
	}
	members := []string{"usr", "etc"}
	for _, n := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		if _, err := os.Lstat("/" + n); err == nil {
			members = append(members, n)
		}
	}
	create := []string{"-C", "/", "--create", "--file=-", "--numeric-owner", "--xattrs", "--xattrs-include=*",
		"--anchored", "--exclude=usr/local/*"}
	for _, e := range etcExcludes {
		create = append(create, "--exclude="+e)
	}
	create = append(create, members...)
	if err := tarPipe(create, []string{"-C", part, "--extract", "--file=-", "--numeric-owner",
		"--same-permissions", "--same-owner", "--xattrs", "--xattrs-include=*"}); err != nil {
		return nil, fmt.Errorf("image: copying host files: %v", err)
	}
	for _, d := range []struct {
		path string
		mode uint32
	}{
		{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"tmp", 0o1777}, {"run", 0o755},
		{"root", 0o700}, {"home", 0o755}, {"mnt", 0o755}, {"var", 0o755}, {"var/tmp", 0o1777},
		{"var/lib", 0o755}, {"var/cache", 0o755}, {"var/log", 0o755}, {"data", 0o755}, {"bench", 0o755},
		{"usr/local", 0o755},
	} {
		p := filepath.Join(part, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return nil, err
		}
		// Raw mode bits (0o1777 = sticky), not Go's os.FileMode.
		if err := syscall.Chmod(p, uint32(d.mode)); err != nil {
			return nil, err
		}
	}
	if err := writeBig(filepath.Join(part, "data", "big"), bigMiB); err != nil {
		return nil, err
	}
	entries, bytes, err := duTree(part)
	if err != nil {
		return nil, err
	}
	info := &imageInfo{
		Version: imageVersion, Created: time.Now().UTC(),
		Source:  "host /usr (minus /usr/local), /etc (minus secrets), " + strings.Join(members[2:], " ") + "; /data/big pseudo-random",
		Entries: entries, Bytes: bytes, BigMiB: bigMiB, BuildSecs: time.Since(t0).Seconds(),
	}
	if err := writeInfo(part, info); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return nil, err
	}
	if err := os.Rename(part, rootfs); err != nil {
		return nil, err
	}
	logf("image: done in %.0f s: %d entries, %.2f GiB", info.BuildSecs, entries, float64(bytes)/(1<<30))
	return info, nil
}

// tarPipe runs `tar CREATE... | tar EXTRACT...`. GNU tar's exit status 1 on create
// ("file changed as we read it", sockets ignored) is tolerated; 2 is fatal.
func tarPipe(create, extract []string) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var cerr, xerr bytes.Buffer
	c := exec.Command("tar", create...)
	c.Stdout, c.Stderr = pw, &cerr
	x := exec.Command("tar", extract...)
	x.Stdin, x.Stderr = pr, &xerr
	if err := c.Start(); err != nil {
		return err
	}
	if err := x.Start(); err != nil {
		_ = c.Process.Kill()
		_ = c.Wait()
		return err
	}
	pw.Close()
	pr.Close()
	ce, xe := c.Wait(), x.Wait()
	if ce != nil {
		if ee, ok := ce.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			return fmt.Errorf("tar create: %v: %s", ce, oneLine(cerr.String()))
		}
		logf("image: tar warnings: %s", oneLine(cerr.String()))
	}
	if xe != nil {
		return fmt.Errorf("tar extract: %v: %s", xe, oneLine(xerr.String()))
	}
	return nil
}

func writeBig(path string, mib int) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	var seed [32]byte
	copy(seed[:], "moat fsbench /data/big seed 0001")
	r := rand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		_, _ = r.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func duTree(root string) (entries, bytes int64, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		entries++
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		if st.Nlink > 1 && st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		bytes += st.Blocks * 512
		return nil
	})
	return
}

// refreshBench installs this binary as /bench/fsbench and the compile sources.
func refreshBench(rootfs string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if !benchrt.IsStaticELF(self) {
		return fmt.Errorf("%s is not statically linked (build it with CGO_ENABLED=0)", self)
	}
	bench := filepath.Join(rootfs, "bench")
	if err := os.MkdirAll(filepath.Join(bench, "src"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "repo"), 0o755); err != nil { // gitstatus's mount point
		return err
	}
	if err := benchrt.CopyFile(self, filepath.Join(bench, "fsbench"), 0o755); err != nil {
		return err
	}
	for _, name := range sourceNames() {
		p := filepath.Join(bench, "src", name)
		if old, err := os.ReadFile(p); err == nil && string(old) == sources[name] {
			continue
		}
		if err := os.WriteFile(p, []byte(sources[name]), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ensureRepo returns IMAGE_DIR/repo, a git work tree of n small files (100 per
// directory) with everything committed and the index refreshed, built once (into
// repo.partial, renamed when complete) and reused while its marker names n.
func ensureRepo(dir string, n int) (string, error) {
	repo := filepath.Join(dir, "repo")
	marker := filepath.Join(repo, ".git", "fsbench-files")
	if data, err := os.ReadFile(marker); err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(n) {
		return repo, nil
	}
	t0 := time.Now()
	logf("repo: building %s (%d files; one-time)", repo, n)
	part := repo + ".partial"
	if err := os.RemoveAll(part); err != nil {
		return "", err
	}
	for i := 0; i < n; i++ {
		d := filepath.Join(part, fmt.Sprintf("d%03d", i/10000), fmt.Sprintf("s%03d", i/100%100))
		if i%100 == 0 {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return "", err
			}
		}
		body := fmt.Sprintf("file %d\n%s\n", i, strings.Repeat("x", i%200))
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d.txt", i%100)), []byte(body), 0o644); err != nil {
			return "", err
		}
	}
	// Racily clean entries (modified in the second the index is written) would make
	// every git status re-read them: let the clock move past the files first.
	time.Sleep(1100 * time.Millisecond)
	git := func(args ...string) error {
		c := exec.Command("git", append([]string{"-C", part, "-c", "user.name=fsbench",
			"-c", "user.email=fsbench@localhost", "-c", "safe.directory=*"}, args...)...)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("repo: git %s: %v: %s", args[0], err, oneLine(string(out)))
		}
		return nil
	}
	for _, a := range [][]string{{"init", "-q"}, {"add", "-A"}, {"commit", "-q", "-m", "fsbench"}, {"status", "--porcelain"}} {
		if err := git(a...); err != nil {
			return "", err
		}
	}
	time.Sleep(1100 * time.Millisecond)
	if err := git("update-index", "--really-refresh"); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(part, ".git", "fsbench-files"), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(repo); err != nil {
		return "", err
	}
	if err := os.Rename(part, repo); err != nil {
		return "", err
	}
	logf("repo: done in %.0f s", time.Since(t0).Seconds())
	return repo, nil
}
