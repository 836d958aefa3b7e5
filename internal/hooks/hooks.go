// Package hooks runs OCI lifecycle hooks: each hook gets the container's state
// JSON on stdin and is killed when its timeout passes. Boot runs prestart,
// createRuntime and poststart; init runs createContainer and startContainer
// in the container's namespaces; `moat delete` runs poststop.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultTimeout bounds a hook that sets no timeout: nothing waits forever.
const DefaultTimeout = 2 * time.Minute

// Kind names a hook list in config.json.
type Kind string

// The six hook kinds.
const (
	Prestart        Kind = "prestart"
	CreateRuntime   Kind = "createRuntime"
	CreateContainer Kind = "createContainer"
	StartContainer  Kind = "startContainer"
	Poststart       Kind = "poststart"
	Poststop        Kind = "poststop"
)

// List returns the hooks of one kind from a spec.
func List(s *specs.Spec, k Kind) []specs.Hook {
	if s == nil || s.Hooks == nil {
		return nil
	}
	h := s.Hooks
	switch k {
	case Prestart:
		return h.Prestart //nolint:staticcheck // deprecated in the spec, still honoured
	case CreateRuntime:
		return h.CreateRuntime
	case CreateContainer:
		return h.CreateContainer
	case StartContainer:
		return h.StartContainer
	case Poststart:
		return h.Poststart
	case Poststop:
		return h.Poststop
	}
	return nil
}

// Run runs every hook of kind k in order with state on stdin and stops at the
// first failure.
func Run(s *specs.Spec, k Kind, state *specs.State) error {
	hooks := List(s, k)
	if len(hooks) == 0 {
		return nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode state for %s hooks: %w", k, err)
	}
	for i, h := range hooks {
		if err := runOne(h, data); err != nil {
			return fmt.Errorf("%s hook #%d (%s): %w", k, i, h.Path, err)
		}
	}
	return nil
}

// RunAll runs every hook of kind k even if some fail, returning one error
// per failure (for poststart and poststop, whose failures are warnings).
func RunAll(s *specs.Spec, k Kind, state *specs.State) []error {
	var errs []error
	data, err := json.Marshal(state)
	if err != nil {
		return []error{err}
	}
	for i, h := range List(s, k) {
		if err := runOne(h, data); err != nil {
			errs = append(errs, fmt.Errorf("%s hook #%d (%s): %w", k, i, h.Path, err))
		}
	}
	return errs
}

func runOne(h specs.Hook, state []byte) error {
	timeout := DefaultTimeout
	if h.Timeout != nil {
		timeout = time.Duration(*h.Timeout) * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	cmd := exec.CommandContext(ctx, h.Path)
	cmd.Args = args
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// The hook's children must not keep the pipes open past its end.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		// It exited 0 but left a child holding its output: that is the
		// child's business, the hook succeeded.
		err = nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %s", timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2048 {
			msg = msg[:2048] + "…"
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}

// State builds the OCI state handed to hooks.
func State(id, bundle string, pid int, status specs.ContainerState, s *specs.Spec) *specs.State {
	st := &specs.State{Version: specs.Version, ID: id, Status: status, Pid: pid, Bundle: bundle}
	if s != nil {
		st.Annotations = s.Annotations
	}
	return st
}
