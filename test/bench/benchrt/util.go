package benchrt

import (
	"debug/elf"
	"io"
	"os"
	"strconv"
)

// EnvStr returns $k when it is set, even to "", else def.
func EnvStr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok {
		return v
	}
	return def
}

// EnvNonEmpty returns $k when it is set and not empty, else def.
func EnvNonEmpty(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

// EnvInt returns $k as an integer, or def when it is unset or not one.
func EnvInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}

// IsStaticELF reports whether path is an ELF file without a program interpreter, i.e. a
// static binary that runs in an empty rootfs.
func IsStaticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// CopyFile copies src to dst with mode through dst+".tmp" renamed over dst, so that dst
// is replaced, never written in place (it may be a running binary or a symlink).
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
