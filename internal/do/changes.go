package do

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// Change is one difference the command made to the host's tree (outside
// --rw paths, whose writes reached the host already).
type Change struct {
	Path    string `json:"path"`
	Kind    string `json:"kind"` // created, modified, deleted
	Type    string `json:"type"` // file, dir, symlink, other
	Size    int64  `json:"size"` // the new size; the old one for a deletion
	OldSize int64  `json:"oldSize,omitempty"`
	Mode    uint32 `json:"mode,omitempty"`
	Target  string `json:"target,omitempty"`
}

// Manifest is a kept change set: DIR/manifest.json, with the created and
// modified entries under DIR/tree at their absolute paths.
type Manifest struct {
	Version int      `json:"version"`
	Roots   []string `json:"roots"` // `moat apply` writes only below these
	Changes []Change `json:"changes"`
	// Outside counts changes that were not kept: below no root, or sparse
	// files.
	Outside int `json:"outside,omitempty"`
}

// ManifestName and TreeName are a kept change set's parts.
const (
	ManifestName = "manifest.json"
	TreeName     = "tree"
)

// Limits on what a sandbox may stream back.
const (
	maxEntryLine = 64 << 10
	maxEntries   = 1 << 20
)

// collector receives the upper layer from do-init.
type collector struct {
	roots   []string
	exclude string   // the --keep-changes directory: not a change to keep
	tree    *os.File // DIR/tree when keeping
	entries []ipc.UpperEntry
	seen    map[string]bool
	notKept []string // files whose content did not come (sparse)
}

// receive reads the stream to its end marker. Content of regular files
// below a root goes into the kept tree; the rest is read and dropped.
func (c *collector) receive(r io.Reader) error {
	br := bufio.NewReaderSize(r, maxEntryLine)
	c.seen = map[string]bool{}
	for n := 0; ; n++ {
		if n > maxEntries {
			return fmt.Errorf("more than %d changed entries", maxEntries)
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the change list ended early (the sandbox was killed?)")
			}
			return fmt.Errorf("change list: %w", err)
		}
		var e ipc.UpperEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("change list: %w", err)
		}
		if e.Type == "end" {
			return nil
		}
		if _, err := cleanRel(e.Path); err != nil {
			return fmt.Errorf("change list: %w", err)
		}
		if e.Content && (e.Type != "file" || e.Size < 0) {
			return fmt.Errorf("change list: content for %s (%s, %d bytes)", e.Path, e.Type, e.Size)
		}
		if err := c.keep(e, br); err != nil {
			return err
		}
		if e.Type != "error" {
			c.entries = append(c.entries, e)
			c.seen[e.Path] = true
		}
	}
}

// keep copies one entry into the kept tree (or drops its content).
func (c *collector) keep(e ipc.UpperEntry, content io.Reader) error {
	if c.tree == nil || !underAny(e.Path, c.roots) || underAny(e.Path, []string{c.exclude}) ||
		e.Type == "whiteout" || e.Type == "other" || e.Type == "error" {
		if e.Content {
			_, err := io.CopyN(io.Discard, content, e.Size)
			return err
		}
		return nil
	}
	rel, _ := cleanRel(e.Path)
	parent, err := openDir(c.tree, filepath.Dir(rel), true)
	if err != nil {
		return fmt.Errorf("keep %s: %w", e.Path, err)
	}
	defer parent.Close()
	pfd, name := int(parent.Fd()), filepath.Base(rel)
	switch e.Type {
	case "dir":
		err = mkdirAt(pfd, name, e.Mode|0o700)
	case "symlink":
		err = symlinkAt(pfd, name, e.Target)
	case "file":
		if !e.Content {
			c.notKept = append(c.notKept, e.Path) // sparse: the reaper sends none
			return nil
		}
		err = writeFileAt(pfd, name, e.Mode&0o777, content, e.Size)
	}
	if err != nil {
		return fmt.Errorf("keep %s: %w", e.Path, err)
	}
	return nil
}

// changes classifies the entries against the host as it is now.
func (c *collector) changes() []Change {
	var out []Change
	for _, e := range c.entries {
		var st unix.Stat_t
		onHost := unix.Lstat(e.Path, &st) == nil
		switch e.Type {
		case "whiteout":
			if onHost {
				out = append(out, Change{Path: e.Path, Kind: "deleted", Type: typeOf(st.Mode), Size: st.Size})
			}
		case "dir":
			switch {
			case !onHost:
				out = append(out, Change{Path: e.Path, Kind: "created", Type: "dir", Mode: e.Mode})
			case st.Mode&unix.S_IFMT != unix.S_IFDIR:
				out = append(out, Change{Path: e.Path, Kind: "modified", Type: "dir", Mode: e.Mode, OldSize: st.Size})
			default:
				if e.Mode != st.Mode&0o7777 {
					out = append(out, Change{Path: e.Path, Kind: "modified", Type: "dir", Mode: e.Mode})
				}
				if e.Opaque {
					out = append(out, c.replaced(e.Path)...)
				}
			}
		default:
			ch := Change{Path: e.Path, Kind: "created", Type: e.Type, Size: e.Size, Mode: e.Mode, Target: e.Target}
			if onHost {
				ch.Kind, ch.OldSize = "modified", st.Size
			}
			out = append(out, ch)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// replaced lists the host entries of a directory the command emptied (an
// opaque upper directory): those it did not make again are deleted.
func (c *collector) replaced(dir string) []Change {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Change
	for _, d := range ents {
		p := filepath.Join(dir, d.Name())
		if c.seen[p] {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil {
			out = append(out, Change{Path: p, Kind: "deleted", Type: typeOf(st.Mode), Size: st.Size})
		}
	}
	return out
}

func typeOf(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	}
	return "other"
}

// underAny reports whether p is one of roots or below one.
func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, strings.TrimSuffix(r, "/")+"/") {
			return true
		}
	}
	return false
}

// printable quotes a name the sandbox chose when it holds anything but
// printable characters: no escape sequence reaches the user's terminal.
func printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// PrintChanges writes the list as text (one line each) or JSON.
func PrintChanges(w io.Writer, changes []Change, format string) error {
	if format == "json" {
		if changes == nil {
			changes = []Change{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(changes)
	}
	for _, c := range changes {
		var detail string
		switch {
		case c.Kind == "modified" && c.Type == "file":
			detail = fmt.Sprintf("mode %04o, %d -> %d bytes", c.Mode, c.OldSize, c.Size)
		case c.Kind == "created" && c.Type == "file":
			detail = fmt.Sprintf("mode %04o, %d bytes", c.Mode, c.Size)
		case c.Type == "symlink" && c.Kind != "deleted":
			detail = "-> " + c.Target
		case c.Type == "dir" && c.Kind != "deleted":
			detail = fmt.Sprintf("mode %04o", c.Mode)
		case c.Type == "dir":
			detail = "with its contents"
		default:
			detail = fmt.Sprintf("%d bytes", c.Size)
		}
		if _, err := fmt.Fprintf(w, "%-8s %-7s %s (%s)\n", c.Kind, c.Type, printable(c.Path), printable(detail)); err != nil {
			return err
		}
	}
	return nil
}
