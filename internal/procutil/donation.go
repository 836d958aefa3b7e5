// Package procutil holds process plumbing shared by moat's roles: descriptor
// donation to child processes, the sealed executable copy, signal names,
// /proc inspection and exit statuses.
package procutil

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Donations collects the descriptors a parent gives to an internal command.
// Every fd crosses the boundary through this one helper: Transfer places them
// after stdio in ExtraFiles and appends `--<purpose>-fd=N` (or
// `--<purpose>-fds=N,M`) to the command line, so fd numbers are never
// hard-coded in two places (STYLE.md 3.3).
type Donations struct {
	items []donation
}

type donation struct {
	flag  string
	files []*os.File
}

// Donate gives f to the child as --<flag>=N. flag must end in "-fd".
func (d *Donations) Donate(flag string, f *os.File) {
	if !strings.HasSuffix(flag, "-fd") {
		panic("procutil: donation flag " + flag + " must end in -fd")
	}
	d.items = append(d.items, donation{flag: flag, files: []*os.File{f}})
}

// DonateMany gives files to the child as --<flag>=N,M,... (flag ends in
// "-fds"). The files keep their order.
func (d *Donations) DonateMany(flag string, files []*os.File) {
	if !strings.HasSuffix(flag, "-fds") {
		panic("procutil: donation flag " + flag + " must end in -fds")
	}
	d.items = append(d.items, donation{flag: flag, files: files})
}

// Transfer appends the donated files to cmd.ExtraFiles, starting at child fd
// 3+len(cmd.ExtraFiles), and the matching flags to cmd.Args. It returns the
// child's fd numbers by flag.
// Precondition: cmd.Args ends where the donation flags belong (before any
// positional arguments).
func (d *Donations) Transfer(cmd *exec.Cmd) map[string][]int {
	out := map[string][]int{}
	for _, it := range d.items {
		nums := make([]string, 0, len(it.files))
		for _, f := range it.files {
			out[it.flag] = append(out[it.flag], 3+len(cmd.ExtraFiles))
			nums = append(nums, strconv.Itoa(3+len(cmd.ExtraFiles)))
			cmd.ExtraFiles = append(cmd.ExtraFiles, f)
		}
		cmd.Args = append(cmd.Args, fmt.Sprintf("--%s=%s", it.flag, strings.Join(nums, ",")))
	}
	return out
}

// Close closes the parent's copies of every donated file.
// Postcondition: only the child holds them.
func (d *Donations) Close() {
	for _, it := range d.items {
		for _, f := range it.files {
			f.Close()
		}
	}
	d.items = nil
}

// Log writes which descriptors go to the child, at debug level.
func (d *Donations) Log(l *slog.Logger, child string) {
	for _, it := range d.items {
		names := make([]string, 0, len(it.files))
		for _, f := range it.files {
			names = append(names, f.Name())
		}
		l.Debug("donating", "child", child, "flag", it.flag, "files", strings.Join(names, ","))
	}
}

// ParseFDList parses a --<purpose>-fds value ("3,4,5").
func ParseFDList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad descriptor %q in %q", p, s)
		}
		out = append(out, n)
	}
	return out, nil
}
