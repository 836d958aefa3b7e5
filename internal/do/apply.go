package do

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ApplyOptions are `moat apply`'s arguments.
type ApplyOptions struct {
	Dir string // a --keep-changes directory
	Yes bool   // do not ask
	// Onto applies the set to this directory instead of its (single) root:
	// to review it on a copy of the tree.
	Onto string
	In   io.Reader
	Out  io.Writer
}

// Apply shows a kept change set and, once confirmed, makes its changes on
// the host. Every path must lie below one of the set's roots; below a
// root no symlink is ever followed (each component is opened with
// RESOLVE_NO_SYMLINKS), so a change cannot reach out of it. Files get
// their kept permission bits without setuid or setgid, and the caller's
// ownership.
func Apply(o ApplyOptions) error {
	m, err := readManifest(o.Dir)
	if err != nil {
		return err
	}
	if len(m.Changes) == 0 {
		fmt.Fprintln(o.Out, "no changes to apply")
		return nil
	}
	for _, c := range m.Changes {
		if _, err := cleanRel(c.Path); err != nil {
			return inputErr("%s: %v", ManifestName, err)
		}
		if rootOf(c.Path, m.Roots) == "" || (c.Kind != "modified" && contains(m.Roots, c.Path)) {
			return inputErr("refusing %s: it is outside the change set's roots (%s)", c.Path, strings.Join(m.Roots, ", "))
		}
	}
	dest := map[string]string{}
	for _, r := range m.Roots {
		dest[r] = r
	}
	if o.Onto != "" {
		if len(m.Roots) != 1 {
			return inputErr("--onto: the change set has %d roots, not one", len(m.Roots))
		}
		onto, err := filepath.Abs(o.Onto)
		if err != nil {
			return inputErr("--onto: %v", err)
		}
		if st, err := os.Stat(onto); err != nil || !st.IsDir() {
			return inputErr("--onto %s: not a directory", onto)
		}
		dest[m.Roots[0]] = onto
	}
	if err := PrintChanges(o.Out, m.Changes, "text"); err != nil {
		return err
	}
	var where []string
	for _, r := range m.Roots {
		where = append(where, dest[r])
	}
	if !o.Yes && !confirm(o, fmt.Sprintf("apply these %d changes below %s? [y/N] ", len(m.Changes), strings.Join(where, ", "))) {
		return inputErr("not applied")
	}
	tree, err := os.OpenFile(filepath.Join(o.Dir, TreeName), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Dir, err)
	}
	defer tree.Close()
	for _, c := range ordered(m.Changes) {
		root := rootOf(c.Path, m.Roots)
		if err := applyOne(c, root, dest[root], tree); err != nil {
			return fmt.Errorf("%s %s: %w", c.Kind, c.Path, err)
		}
	}
	fmt.Fprintf(o.Out, "applied %d changes\n", len(m.Changes))
	return nil
}

func readManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, inputErr("%s: %v (not a --keep-changes directory?)", dir, describe(err))
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil || m.Version != 1 {
		return nil, inputErr("%s: not a version 1 manifest (%v)", filepath.Join(dir, ManifestName), err)
	}
	for _, r := range m.Roots {
		if _, err := cleanRel(r); err != nil {
			return nil, inputErr("%s: root %v", ManifestName, err)
		}
	}
	return &m, nil
}

// rootOf is the longest root p lies below (or is), or "".
func rootOf(p string, roots []string) string {
	best := ""
	for _, r := range roots {
		if underAny(p, []string{r}) && len(r) > len(best) {
			best = r
		}
	}
	return best
}

func confirm(o ApplyOptions, question string) bool {
	fmt.Fprint(o.Out, question)
	line, _ := bufio.NewReader(o.In).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}

// ordered puts deletions first (deepest first), then directories
// (shallowest first), then the rest.
func ordered(in []Change) []Change {
	out := append([]Change{}, in...)
	rank := func(c Change) int {
		switch {
		case c.Kind == "deleted":
			return 0
		case c.Type == "dir":
			return 1
		}
		return 2
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		if rank(a) == 0 {
			return depth(a.Path) > depth(b.Path)
		}
		return depth(a.Path) < depth(b.Path)
	})
	return out
}

// applyOne makes one change recorded below root in dest (root itself, or
// --onto).
func applyOne(c Change, root, dest string, tree *os.File) error {
	rootDir, err := os.OpenFile(dest, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer rootDir.Close()
	rel, err := filepath.Rel(root, c.Path)
	if err != nil {
		return err
	}
	if rel == "." {
		if c.Type != "dir" {
			return fmt.Errorf("the root itself can only change its mode")
		}
		return unix.Fchmodat(int(rootDir.Fd()), ".", c.Mode&0o1777, 0)
	}
	parent, err := openDir(rootDir, filepath.Dir(rel), c.Kind != "deleted")
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd, name := int(parent.Fd()), filepath.Base(rel)
	switch {
	case c.Kind == "deleted":
		return removeAllAt(pfd, name)
	case c.Type == "dir":
		var st unix.Stat_t
		if c.Kind == "created" && unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("a %s stands there now: not replaced", typeOf(st.Mode))
		}
		return mkdirAt(pfd, name, c.Mode)
	case c.Type == "symlink":
		return replaceWith(pfd, name, func() error { return symlinkAt(pfd, name, c.Target) })
	case c.Type == "file":
		src, err := openKept(tree, c.Path)
		if err != nil {
			return err
		}
		defer src.Close()
		return replaceWith(pfd, name, func() error { return writeFileAt(pfd, name, c.Mode&0o777, src, c.Size) })
	}
	return fmt.Errorf("cannot apply a change of type %s", c.Type)
}

// replaceWith removes a directory standing where a file or symlink goes
// (rename cannot replace it), then makes it.
func replaceWith(dir int, name string, make func() error) error {
	var st unix.Stat_t
	if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := removeAllAt(dir, name); err != nil {
			return err
		}
	}
	return make()
}

// openKept opens a kept regular file, never through a symlink.
func openKept(tree *os.File, p string) (*os.File, error) {
	rel, err := cleanRel(p)
	if err != nil {
		return nil, err
	}
	dir, err := openDir(tree, filepath.Dir(rel), false)
	if err != nil {
		return nil, fmt.Errorf("kept copy: %w", err)
	}
	defer dir.Close()
	fd, err := openat2(int(dir.Fd()), filepath.Base(rel), unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("kept copy: %w", err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, fmt.Errorf("kept copy of %s is not a regular file", p)
	}
	return f, nil
}
