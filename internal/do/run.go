package do

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/container"
)

// ExitTimeout is the exit status after --timeout, as coreutils timeout's.
const ExitTimeout = 124

// EmptyFiles makes, in a state root, the empty read-only files that hidden
// files show; Remove deletes them once the sandbox is gone.
type EmptyFiles struct {
	Root  string
	paths []string
}

// Make creates one.
// Precondition: Root is the state root, owned by the caller and closed to
// others (state.Open checks it).
func (e *EmptyFiles) Make() (string, error) {
	if len(e.paths) > 0 {
		return e.paths[0], nil
	}
	f, err := os.CreateTemp(e.Root, ".do-empty-*")
	if err != nil {
		return "", fmt.Errorf("empty file for hidden files: %w", err)
	}
	e.paths = append(e.paths, f.Name())
	err = f.Chmod(0o444)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("empty file for hidden files: %w", err)
	}
	return f.Name(), nil
}

// Remove deletes what Make made.
func (e *EmptyFiles) Remove() {
	for _, p := range e.paths {
		os.Remove(p)
	}
	e.paths = nil
}

// Configure sets the runtime's global settings from the plan: the gofer
// with the memory overlay (the host's files are never written but through
// --rw), and the network.
func (p *Plan) Configure(cfg *config.Config, o *Options) error {
	if cfg.FileAccess != config.FileAccessGofer {
		return inputErr("--file-access=%s: moat do serves the host's files through the gofer only", cfg.FileAccess)
	}
	if cfg.Overlay != config.OverlayMemory {
		return inputErr("--overlay=%s: moat do keeps the command's writes in the memory overlay", cfg.Overlay)
	}
	cfg.Network = p.network
	cfg.Egress = append(cfg.Egress, o.Egress...)
	cfg.EgressDomain = append(cfg.EgressDomain, o.EgressDomain...)
	cfg.Publish = append(cfg.Publish, o.Publish...)
	if err := cfg.Validate(); err != nil {
		return inputErr("%v", err)
	}
	if _, err := cfg.WithAnnotations(nil); err != nil {
		return inputErr("%v", err)
	}
	return nil
}

// Run runs the plan to its end and returns the command's exit status:
// its own, 128+N if a signal N ended it, 124 after --timeout. The change
// report (--changes) goes to report.
// Postcondition: nothing of the sandbox is left (processes, state).
func Run(rt *container.Runtime, p *Plan, report io.Writer) (int, error) {
	id, err := newID()
	if err != nil {
		return 1, err
	}
	o := container.RunOptions{CreateOptions: container.CreateOptions{
		ID: id, Bundle: "/", Spec: p.Spec, Stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr},
	}}
	var col *collecting
	if p.changes || p.keep != "" {
		if col, err = p.collect(); err != nil {
			return 1, err
		}
		o.Extra = []*os.File{col.w}
	}
	if p.profile != nil {
		r, err := profilePipe(p.profile)
		if err != nil {
			return 1, err
		}
		defer r.Close()
		o.Extra = append(o.Extra, r)
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	defer readyW.Close()
	o.Extra = append(o.Extra, readyW)
	var ready atomic.Bool
	go func() {
		defer readyR.Close()
		var b [1]byte
		if n, _ := readyR.Read(b[:]); n == 1 {
			ready.Store(true)
		}
	}()
	var timedOut atomic.Bool
	var interrupted atomic.Int32
	stop := make(chan struct{})
	defer close(stop)
	if p.limits.timeout > 0 {
		go killAfter(rt, id, p.limits.timeout, stop, &timedOut)
	}
	// Until the command runs, a ^C or SIGTERM ends the sandbox being made
	// (by default it would kill this process halfway, leaving state);
	// once it runs, rt.Run forwards signals to it.
	early := make(chan os.Signal, 4)
	signal.Notify(early, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(early)
	go killEarly(rt, id, early, stop, &ready, &interrupted)
	code, err := rt.Run(o)
	if timedOut.Load() {
		code, err = ExitTimeout, nil
	}
	if sig := interrupted.Load(); sig != 0 {
		code, err = 128+int(sig), nil
	}
	if col != nil {
		if cerr := col.finish(p, report); cerr != nil && err == nil {
			rt.Warn(fmt.Sprintf("changes: %v", cerr))
		}
	}
	return code, err
}

// collecting is a change list being received.
type collecting struct {
	w    *os.File // the sandbox's end, passed to the reaper
	done chan error
	c    *collector
}

// collect starts receiving the reaper's stream (and keeping it).
func (p *Plan) collect() (*collecting, error) {
	c := &collector{roots: p.roots, exclude: p.keep}
	if p.keep != "" {
		if err := os.MkdirAll(filepath.Join(p.keep, TreeName), 0o700); err != nil {
			return nil, fmt.Errorf("--keep-changes: %w", err)
		}
		tree, err := os.OpenFile(filepath.Join(p.keep, TreeName), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("--keep-changes: %w", err)
		}
		c.tree = tree
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	col := &collecting{w: w, done: make(chan error, 1), c: c}
	go func() {
		err := c.receive(r)
		r.Close()
		col.done <- err
	}()
	return col, nil
}

// collectTimeout bounds the wait for the rest of the change list once the
// sandbox is gone (its writers are closed: it ends at once).
const collectTimeout = 30 * time.Second

// finish waits for the list, prints it and writes the manifest.
// Precondition: the sandbox is gone.
func (col *collecting) finish(p *Plan, report io.Writer) error {
	col.w.Close()
	if col.c.tree != nil {
		defer col.c.tree.Close()
	}
	var err error
	select {
	case err = <-col.done:
	case <-time.After(collectTimeout):
		err = fmt.Errorf("no end of the change list after %s", collectTimeout)
	}
	if err != nil {
		return err
	}
	changes := col.c.changes()
	if p.changes {
		if err := PrintChanges(report, changes, p.format); err != nil {
			return err
		}
	}
	if p.keep == "" {
		return nil
	}
	m := Manifest{Version: 1, Roots: p.roots, Changes: []Change{}}
	for _, c := range changes {
		if contains(col.c.notKept, c.Path) {
			m.Outside++
			continue
		}
		if underAny(c.Path, p.roots) && !underAny(c.Path, []string{p.keep}) {
			m.Changes = append(m.Changes, c)
		} else {
			m.Outside++
		}
	}
	if len(col.c.notKept) > 0 {
		fmt.Fprintf(report, "moat do: --keep-changes: %d sparse file(s) not kept, e.g. %s\n", len(col.c.notKept), printable(col.c.notKept[0]))
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.keep, ManifestName), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("--keep-changes: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// killAfter kills the whole sandbox once d has passed, unless stop closes
// first.
func killAfter(rt *container.Runtime, id string, d time.Duration, stop chan struct{}, timedOut *atomic.Bool) {
	select {
	case <-stop:
		return
	case <-time.After(d):
	}
	timedOut.Store(true)
	killAll(rt, id, stop)
}

// killEarly kills the sandbox when a terminating signal arrives before
// its command runs (a running one gets the signal from rt.Run).
func killEarly(rt *container.Runtime, id string, sigs chan os.Signal, stop chan struct{}, ready *atomic.Bool, interrupted *atomic.Int32) {
	for {
		select {
		case <-stop:
			return
		case s := <-sigs:
			// Once the reaper handles signals, rt.Run forwards them to it.
			// Before (a reaper still starting up, pid 1 of the sandbox,
			// would end with Go's exit 2), it is "before the command
			// runs": the sandbox is killed.
			sig := s.(unix.Signal)
			if ready.Load() {
				continue
			}
			interrupted.Store(int32(sig))
			killAll(rt, id, stop)
			return
		}
	}
}

// killAll kills every process of the sandbox, retrying while it is still
// being made, until stop closes.
func killAll(rt *container.Runtime, id string, stop chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := rt.Kill(id, unix.SIGKILL, true); err == nil {
			return
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// profilePipe is a pipe holding data, whose read end the sandbox gets.
func profilePipe(data []byte) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	go func() {
		// Bounded by the pipe's reader: the sandbox's reaper, or EOF when
		// it is gone.
		w.Write(data)
		w.Close()
	}()
	return r, nil
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", errors.New("no randomness for the sandbox id")
	}
	return "do-" + hex.EncodeToString(b[:]), nil
}
