// Package container implements the container lifecycle as the CLI sees it:
// create, start, run, kill, delete, state and the rest. It runs in the moat
// CLI process, records containers through package state, and drives `moat
// boot` through package sandbox.
package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/cgroup"
	"github.com/moat-sandbox/moat/internal/config"
	"github.com/moat-sandbox/moat/internal/procutil"
	"github.com/moat-sandbox/moat/internal/state"
)

// Runtime is the CLI's entry point to every container operation.
type Runtime struct {
	Config *config.Config
	Store  *state.Store
	Log    *slog.Logger
	// LogFile is the --log file, shared with boot; nil logs boot to the
	// container's state directory.
	LogFile *os.File
	// Warn prints a warning for the user (stderr and the log).
	Warn func(msg string)
}

// Status derives a container's status from its processes: nothing in
// state.json can go stale when boot is killed.
func Status(s *state.State) specs.ContainerState {
	if s.InitPid == 0 {
		if procutil.Alive(s.BootPid, s.BootStart) {
			return specs.StateCreating
		}
		if s.BootPid == 0 && s.Dir() != "" && recentlyMade(s.Dir()) {
			return specs.StateCreating
		}
		return specs.StateStopped
	}
	if !procutil.Alive(s.InitPid, s.InitStart) {
		return specs.StateStopped
	}
	if !s.Started {
		return specs.StateCreated
	}
	if cg, err := loadCgroup(s); err == nil && cg != nil {
		if paused, err := cg.Paused(); err == nil && paused {
			return "paused"
		}
	}
	return specs.StateRunning
}

// recentlyMade tells a directory whose create is still starting boot from
// the leftover of a crashed create.
func recentlyMade(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && time.Since(st.ModTime()) < 10*time.Second
}

func loadCgroup(s *state.State) (*cgroup.Manager, error) {
	if len(s.Cgroup) == 0 || string(s.Cgroup) == "null" {
		return nil, nil
	}
	var saved cgroup.Saved
	if err := json.Unmarshal(s.Cgroup, &saved); err != nil {
		return nil, fmt.Errorf("cgroup state: %w", err)
	}
	return cgroup.Load(saved)
}

// ociState is what `moat state` prints: the OCI state plus the fields runc
// adds, which containerd's go-runc reads.
type ociState struct {
	specs.State
	Rootfs  string    `json:"rootfs"`
	Created time.Time `json:"created"`
	Owner   string    `json:"owner"`
}

// State returns a container's OCI state.
func (r *Runtime) State(id string) (*ociState, error) {
	s, err := r.Store.Load(id)
	if err != nil {
		return nil, err
	}
	return toOCIState(s), nil
}

func toOCIState(s *state.State) *ociState {
	st := Status(s)
	out := &ociState{
		State:   specs.State{Version: specs.Version, ID: s.ID, Status: st, Bundle: s.Bundle},
		Rootfs:  s.Rootfs(),
		Created: s.Created,
		Owner:   ownerName(s.Owner),
	}
	if st != specs.StateStopped {
		out.Pid = s.InitPid
	}
	if s.Spec() != nil {
		out.Annotations = s.Spec().Annotations
	}
	return out
}

// List returns the state of every container.
func (r *Runtime) List() ([]*ociState, error) {
	ids, err := r.Store.List()
	if err != nil {
		return nil, err
	}
	var out []*ociState
	for _, id := range ids {
		s, err := r.Store.Load(id)
		if err != nil {
			if errors.Is(err, state.ErrNotExist) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, toOCIState(s))
	}
	return out, nil
}

// ownerName is the user name of uid, or the number.
func ownerName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// wrongState builds the error for an operation the status forbids.
func wrongState(id, op string, st specs.ContainerState) error {
	return state.Said(state.ErrWrongState, "cannot %s container %s: it is %s", op, id, st)
}
