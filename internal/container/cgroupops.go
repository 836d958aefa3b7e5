package container

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/cgroup"
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/sandbox"
	"github.com/moat-sandbox/moat/internal/state"
)

// cgroupOf loads a container's cgroup manager, with a clear error when the
// container has none.
func cgroupOf(s *state.State) (*cgroup.Manager, error) {
	cg, err := loadCgroup(s)
	if err != nil {
		return nil, err
	}
	if cg == nil {
		return nil, fmt.Errorf("container %s has no cgroup", s.ID)
	}
	// A disabled manager (rootless without delegation) answers every call
	// with the reason cgroups are unavailable.
	return cg, nil
}

// Pids lists the host pids of the container's processes.
func (r *Runtime) Pids(id string) ([]int, error) {
	s, err := r.Store.Load(id)
	if err != nil {
		return nil, err
	}
	if st := Status(s); st == specs.StateStopped {
		return []int{}, nil
	}
	var pids []int
	if cg, err := loadCgroup(s); err == nil && cg != nil && cg.Available() {
		if pids, err = cg.Pids(); err != nil {
			return nil, err
		}
	} else {
		// No cgroup (rootless without delegation): boot knows.
		var ps ipc.BootPs
		if err := sandbox.Request(s.ControllerPath(), ipc.ClientPsRequested{}, &ps, 10*time.Second); err != nil {
			return nil, fmt.Errorf("ps %s: %w", id, err)
		}
		pids = ps.Pids
	}
	if pids == nil {
		pids = []int{}
	}
	// The container's own process first (tools take the first pid for it,
	// as with runc), then the rest in order.
	slices.SortFunc(pids, func(x, y int) int {
		switch {
		case x == y:
			return 0
		case x == s.InitPid:
			return -1
		case y == s.InitPid:
			return 1
		}
		return x - y
	})
	return pids, nil
}

// Pause freezes a running container.
func (r *Runtime) Pause(id string) error {
	s, lk, err := r.Store.LoadLocked(id)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if st := Status(s); st != specs.StateRunning {
		return wrongState(id, "pause", st)
	}
	cg, err := cgroupOf(s)
	if err != nil {
		return err
	}
	return cg.Pause()
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error {
	s, lk, err := r.Store.LoadLocked(id)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if st := Status(s); st != "paused" {
		return wrongState(id, "resume", st)
	}
	cg, err := cgroupOf(s)
	if err != nil {
		return err
	}
	return cg.Resume()
}

// Update changes a container's resource limits; res is a JSON
// LinuxResources object (runc update --resources).
func (r *Runtime) Update(id string, res io.Reader) error {
	var lr specs.LinuxResources
	if err := json.NewDecoder(res).Decode(&lr); err != nil {
		return fmt.Errorf("--resources: %w", err)
	}
	s, lk, err := r.Store.LoadLocked(id)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	if st := Status(s); st == specs.StateStopped {
		return wrongState(id, "update", st)
	}
	cg, err := cgroupOf(s)
	if err != nil {
		return err
	}
	if err := cg.Update(&lr); err != nil {
		return err
	}
	saved, err := json.Marshal(cg.Saved())
	if err != nil {
		return err
	}
	s.Cgroup = saved
	return s.Save()
}

// Events writes stats events for a container: one with once, else one
// every interval until the container stops.
func (r *Runtime) Events(id string, once bool, interval time.Duration, w io.Writer) error {
	enc := json.NewEncoder(w)
	for {
		s, err := r.Store.Load(id)
		if err != nil {
			return err
		}
		if st := Status(s); st == specs.StateStopped {
			if once {
				return wrongState(id, "get stats of", st)
			}
			return nil
		}
		cg, err := cgroupOf(s)
		if err != nil {
			return err
		}
		stats, err := cg.Stats()
		if err != nil {
			return err
		}
		if err := enc.Encode(cgroup.NewStatsEvent(id, stats)); err != nil {
			return err
		}
		if once {
			return nil
		}
		time.Sleep(interval)
	}
}
