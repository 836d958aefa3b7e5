// Package state keeps moat's record of each container on disk: one directory
// per container under the state root, holding state.json, the controller
// socket and boot's log.
//
// Documented state files (tools may read them): <root>/<id>/state.json.
// Everything else in the directory is subject to change.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/moat-sandbox/moat/internal/ipc"
)

// Sentinel errors; test with errors.Is.
var (
	ErrNotExist  = errors.New("container does not exist")
	ErrExist     = errors.New("container already exists")
	ErrInvalidID = errors.New("invalid container id")
	// ErrNotRunning says runc's words (see package ipc, where it lives so
	// that it keeps its identity when boot reports it).
	ErrNotRunning = ipc.ErrNotRunning
	ErrRunning    = errors.New("container is running")
	ErrWrongState = errors.New("operation not allowed in the container's state")
	// ErrLocked: another moat command held the container's lock for the
	// whole wait.
	ErrLocked = errors.New("container is locked by another moat command")
)

// Said is an error that errors.Is matches with sentinel but whose message is
// its own sentence alone, when the sentinel's words would repeat it
// ("container is running: cannot delete container x: it is running").
func Said(sentinel error, format string, a ...any) error {
	return &said{sentinel: sentinel, msg: fmt.Sprintf(format, a...)}
}

type said struct {
	sentinel error
	msg      string
}

func (e *said) Error() string { return e.msg }
func (e *said) Unwrap() error { return e.sentinel }

// Files inside a container's directory.
const (
	stateFile      = "state.json"
	ControllerName = "ctl.sock"
	BootLogName    = "boot.log"
)

var idPattern = regexp.MustCompile(`^[\w+\-.]+$`)

// ValidateID checks a container id the way runc does, plus a length bound so
// that paths built from it stay short.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > 1024:
		return fmt.Errorf("%w: longer than 1024 bytes", ErrInvalidID)
	case id == "." || id == ".." || !idPattern.MatchString(id):
		return fmt.Errorf("%w %q: use letters, digits, '_', '+', '-' and '.'", ErrInvalidID, id)
	}
	return nil
}

// State is what moat records about a container.
type State struct {
	// ---- persisted: the documented state.json ----
	ID      string    `json:"id"`
	Bundle  string    `json:"bundle"`
	Created time.Time `json:"created"`
	Owner   int       `json:"owner"`
	// BootPid is `moat boot`, the sandbox supervisor (--pid-file names init).
	BootPid   int    `json:"bootPid"`
	BootStart uint64 `json:"bootStart"`
	// InitPid is the container process (the OCI state's pid).
	InitPid   int    `json:"initPid"`
	InitStart uint64 `json:"initStart"`
	// Started is set once `start` has run the container process.
	Started  bool            `json:"started"`
	Rootless bool            `json:"rootless,omitempty"`
	Cgroup   json.RawMessage `json:"cgroup,omitempty"`
	// Plan is what the CLI worked out at create (ipc.Plan): the effective
	// spec, the absolute rootfs, the gofer's and the network's parts.
	// Later commands read it, never the bundle.
	Plan *ipc.Plan `json:"plan"`

	// ---- not persisted ----
	dir string `json:"-"`
}

// Spec is the effective spec of the plan; nil while the container is
// being created.
func (s *State) Spec() *specs.Spec {
	if s.Plan == nil {
		return nil
	}
	return s.Plan.Spec
}

// Rootfs is the plan's absolute root filesystem path; "" while the
// container is being created.
func (s *State) Rootfs() string {
	if s.Plan == nil {
		return ""
	}
	return s.Plan.Rootfs
}

// legacyState is what a moat from before the plan recorded in its place:
// the spec and the rootfs. Such a container is still read (its boot has
// its plan already): the plan is made of those two, without the gofer's
// and the network's parts, which only boot used.
type legacyState struct {
	Rootfs string      `json:"rootfs"`
	Spec   *specs.Spec `json:"spec"`
}

// Dir is the container's state directory.
func (s *State) Dir() string { return s.dir }

// ControllerPath is boot's controller socket.
func (s *State) ControllerPath() string { return filepath.Join(s.dir, ControllerName) }

// Store is a state root directory.
type Store struct {
	Root string
}

// ErrUnsafeRoot marks a state root someone else controls.
var ErrUnsafeRoot = errors.New("unsafe state directory")

// Open prepares the state root, creating it (mode 0700) if needed. A root
// owned by another user, or writable by others, is refused: whoever controls
// it controls which processes moat signals and deletes.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	// Lstat: a symlink planted by someone else (say /tmp/moat-UID, made
	// before us) would let its owner retarget the root after this check.
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%w: %s is not a directory (a symlink?): use --root", ErrUnsafeRoot, root)
	}
	if int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not by you (uid %d): use --root", ErrUnsafeRoot, root, st.Uid, os.Geteuid())
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %#o): chmod 700 it", ErrUnsafeRoot, root, st.Mode&0o7777)
	}
	return &Store{Root: root}, nil
}

// Lock is an exclusive lock on one container's directory.
type Lock struct {
	f *os.File
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// lockDir takes an exclusive flock on dir, waiting at most timeout.
func lockDir(dir string, timeout time.Duration) (*Lock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := FlockWait(int(f.Fd()), timeout); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, Said(ErrLocked, "state %s is locked by another moat command (waited %s)", dir, timeout)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// FlockWait takes an exclusive flock on fd, waiting at most timeout; when
// the time is up the error wraps unix.EWOULDBLOCK.
func FlockWait(fd int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EWOULDBLOCK {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("held by another process (waited %s): %w", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockTimeout bounds how long a command waits for another one on the same
// container.
const lockTimeout = 30 * time.Second

// Create makes the directory of a new container and returns it locked.
func (st *Store) Create(id string) (*State, *Lock, error) {
	if err := ValidateID(id); err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(st.Root, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("%w: %s", ErrExist, id)
		}
		return nil, nil, fmt.Errorf("create state for %s: %w", id, err)
	}
	lk, err := lockDir(dir, lockTimeout)
	if err != nil {
		os.Remove(dir)
		return nil, nil, err
	}
	return &State{ID: id, dir: dir, Owner: os.Geteuid()}, lk, nil
}

// Load reads a container's state without locking it.
func (st *Store) Load(id string) (*State, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(st.Root, id)
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, derr := os.Stat(dir); derr == nil {
				// Being created (or a crashed create): boot pid unknown yet.
				return &State{ID: id, dir: dir}, nil
			}
			return nil, fmt.Errorf("%w: %s", ErrNotExist, id)
		}
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	s, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("state of %s is corrupt: %w", id, err)
	}
	s.dir = dir
	return s, nil
}

// decode reads state.json: one decode, the plan's spec included. A file
// of an earlier moat (a spec and a rootfs, no plan) is read compatibly.
func decode(data []byte) (*State, error) {
	s := &State{}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, err
	}
	if s.Plan != nil {
		return s, nil
	}
	var old legacyState
	if err := json.Unmarshal(data, &old); err != nil {
		return nil, err
	}
	if old.Spec != nil {
		s.Plan = &ipc.Plan{Spec: old.Spec, Rootfs: old.Rootfs}
	}
	return s, nil
}

// LoadLocked reads a container's state under its lock.
func (st *Store) LoadLocked(id string) (*State, *Lock, error) {
	return st.LoadLockedWithin(id, lockTimeout)
}

// LoadLockedWithin is LoadLocked waiting at most timeout for the lock.
func (st *Store) LoadLockedWithin(id string, timeout time.Duration) (*State, *Lock, error) {
	if err := ValidateID(id); err != nil {
		return nil, nil, err
	}
	lk, err := lockDir(filepath.Join(st.Root, id), timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("%w: %s", ErrNotExist, id)
		}
		return nil, nil, err
	}
	s, err := st.Load(id)
	if err != nil {
		lk.Unlock()
		return nil, nil, err
	}
	return s, lk, nil
}

// Save writes state.json atomically.
// Precondition: the caller holds the container's lock.
func (s *State) Save() error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := filepath.Join(s.dir, "."+stateFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, stateFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// Remove deletes the container's directory.
// Precondition: the caller holds the container's lock and boot is gone.
func (s *State) Remove() error {
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove state of %s: %w", s.ID, err)
	}
	return nil
}

// List returns the ids of every container in the store, sorted.
func (st *Store) List() ([]string, error) {
	ents, err := os.ReadDir(st.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", st.Root, err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}
