package do

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
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
// its own, 128+N if a signal N ended it, 124 after --timeout.
// Postcondition: nothing of the sandbox is left (processes, state).
func Run(rt *container.Runtime, p *Plan) (int, error) {
	id, err := newID()
	if err != nil {
		return 1, err
	}
	o := container.RunOptions{CreateOptions: container.CreateOptions{
		ID: id, Bundle: "/", Spec: p.Spec, Stdio: [3]*os.File{os.Stdin, os.Stdout, os.Stderr},
	}}
	var timedOut atomic.Bool
	stop := make(chan struct{})
	defer close(stop)
	if p.limits.timeout > 0 {
		go killAfter(rt, id, p.limits.timeout, stop, &timedOut)
	}
	code, err := rt.Run(o)
	if timedOut.Load() {
		return ExitTimeout, nil
	}
	return code, err
}

// killAfter kills the whole sandbox once d has passed, unless stop closes
// first. The sandbox may still be starting: the kill is retried.
func killAfter(rt *container.Runtime, id string, d time.Duration, stop chan struct{}, timedOut *atomic.Bool) {
	select {
	case <-stop:
		return
	case <-time.After(d):
	}
	timedOut.Store(true)
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

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", errors.New("no randomness for the sandbox id")
	}
	return "do-" + hex.EncodeToString(b[:]), nil
}
