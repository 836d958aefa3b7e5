package ipc

import specs "github.com/opencontainers/runtime-spec/specs-go"

// ---------------------------------------------------------------------------
// spawn: boot <-> `moat spawner`, over the socketpair donated as
// --spawn-requests-fd. Boot installs its seccomp filter once the container
// is created; every process it starts afterwards must not inherit it, so
// the unfiltered spawner forks them. Each request carries, as its first
// descriptor, a fresh socket on which the one reply comes back (requests
// are served concurrently; the request socket carries requests only).
//
//	boot                                         spawner
//	 |-- BootSpawnRequested [reply, pidns?, files…] ->| setns(pid) on a throwaway thread,
//	 |                                                 | clone(CLONE_PARENT|CLONE_PIDFD), execve
//	 |<- (reply) SpawnerSpawned{pid} [pidfd] ----------|  (the child is boot's)
//	 |-- BootHooksRequested [reply] ------------------>| runs the hooks, waits (their timeouts)
//	 |<- (reply) SpawnerHooksRan{errors} --------------|
//	 | boot's socket closes (boot died) -------------->| exits

// BootSpawnRequested asks the spawner to fork one child of boot and execute
// Path. The message's descriptors are: the reply socket, then the pid
// namespace to be born in (JoinPidNS), then the child's files.
type BootSpawnRequested struct {
	Path string   `json:"path"`
	Args []string `json:"args"`
	Env  []string `json:"env"`
	// Files maps the child's descriptors 0.. to the request's files (index
	// among the files after the reply socket and pid namespace), or -1:
	// /dev/null for 0..2, closed above.
	Files     []int `json:"files"`
	Setsid    bool  `json:"setsid,omitempty"`
	JoinPidNS bool  `json:"joinPidNS,omitempty"`
}

// Kind implements Message.
func (BootSpawnRequested) Kind() string { return "BootSpawnRequested" }

// SpawnerSpawned reports the child's pid; its pidfd comes with it.
type SpawnerSpawned struct {
	Pid int `json:"pid"`
}

// Kind implements Message.
func (SpawnerSpawned) Kind() string { return "SpawnerSpawned" }

// BootHooksRequested asks the spawner to run one kind of the spec's hooks
// (poststart) with the container state on their stdin.
type BootHooksRequested struct {
	HookKind string       `json:"hookKind"`
	Hooks    *specs.Hooks `json:"hooks"`
	State    *specs.State `json:"state"`
}

// Kind implements Message.
func (BootHooksRequested) Kind() string { return "BootHooksRequested" }

// SpawnerHooksRan lists the hooks' failures, one message each.
type SpawnerHooksRan struct {
	Errors []string `json:"errors,omitempty"`
}

// Kind implements Message.
func (SpawnerHooksRan) Kind() string { return "SpawnerHooksRan" }
