package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Message is anything that crosses a process boundary. Its Kind names the
// sender and the event, e.g. "BootCreated" is sent by boot once the container
// is created.
type Message interface{ Kind() string }

// Failed carries an error from one process to another as data, never as a
// lost log line (STYLE.md 3.6). Role names the sender ("boot", "init", ...);
// Sentinel, when set, names an error the receiver can test with errors.Is.
type Failed struct {
	Role     string `json:"role"`
	Error    string `json:"error"`
	Sentinel string `json:"sentinel,omitempty"`
}

// Kind implements Message: "BootFailed", "InitFailed", ...
func (f Failed) Kind() string { return roleTitle(f.Role) + "Failed" }

func roleTitle(r string) string {
	if r == "" {
		return "Peer"
	}
	return strings.ToUpper(r[:1]) + r[1:]
}

// RemoteError is a Failed message turned back into a Go error.
type RemoteError struct {
	Role     string
	Msg      string
	Sentinel error
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap lets errors.Is match the sentinel the sender named.
func (e *RemoteError) Unwrap() error { return e.Sentinel }

// SentinelName returns the wire name of the first sentinel (errors.go) err
// wraps, or "".
func SentinelName(err error) string {
	for name, s := range sentinels {
		if errors.Is(err, s) {
			return name
		}
	}
	return ""
}

// FailedFrom builds the Failed message for err sent by role.
func FailedFrom(role string, err error) Failed {
	return Failed{Role: role, Error: err.Error(), Sentinel: SentinelName(err)}
}

// AsError converts a received *Failed message into an error; other messages
// return nil.
func (r *Raw) AsError() error {
	if !strings.HasSuffix(r.Type, "Failed") {
		return nil
	}
	var f Failed
	if err := json.Unmarshal(r.Body, &f); err != nil {
		return fmt.Errorf("%s (undecodable: %v)", r.Type, err)
	}
	return &RemoteError{Role: f.Role, Msg: f.Error, Sentinel: sentinels[f.Sentinel]}
}

// Decode unmarshals the body into m after checking the type matches.
func (r *Raw) Decode(m Message) error {
	if r.Type != m.Kind() {
		return fmt.Errorf("expected %s, got %s", m.Kind(), r.Type)
	}
	if len(r.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Body, m); err != nil {
		return fmt.Errorf("decode %s: %w", r.Type, err)
	}
	return nil
}

// WaitFor receives the next message and decodes it into want. A Failed
// message becomes the returned error; any other type is rejected as a
// protocol violation. On success the caller owns the received files.
func (c *Conn) WaitFor(want Message) ([]*os.File, error) {
	raw, err := c.Recv()
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", want.Kind(), err)
	}
	if ferr := raw.AsError(); ferr != nil {
		raw.CloseFiles()
		return nil, ferr
	}
	if err := raw.Decode(want); err != nil {
		raw.CloseFiles()
		return nil, fmt.Errorf("protocol error: %w", err)
	}
	return raw.Files, nil
}

// ---------------------------------------------------------------------------
// create: CLI <-> boot, over the socketpair donated as --create-sync-fd.
//
//	CLI                               boot                           init
//	 |-- spawn boot (--exe-fd) -------->|                              |
//	 |-- ClientExeSealed -------------->| checks the seals             |
//	 |                                  |-- spawn init (new ns) ------>|
//	 |                                  |-- BootInitConfig ----------->|
//	 |                                  |<- InitHooksRequested --------| mounts done
//	 |                                  | prestart, createRuntime hooks |
//	 |                                  |-- BootHooksDone ------------>| createContainer hooks,
//	 |                                  |<- InitCreated [pty master] --| pivot_root; waits for start
//	 |<- BootCreated [pty master] ------|                              |
//	 | write state.json, pid file       |                              |
//	 |-- ClientCreateCommitted -------->| serves the controller socket |
//	 | exit (create) / start (run)      |                              |
//
// If the CLI's end closes before ClientCreateCommitted, boot kills the
// container and exits: nothing runs that no state file names.

// ClientExeSealed tells boot that the memfd donated as --exe-fd is complete
// and sealed; boot checks the seals itself before executing it. The CLI
// makes the copy while boot starts up.
type ClientExeSealed struct{}

// Kind implements Message.
func (ClientExeSealed) Kind() string { return "ClientExeSealed" }

// BootCreated is boot's answer once the container is in state created.
// A pty master comes with it when process.terminal is set.
type BootCreated struct {
	InitPid   int    `json:"initPid"`
	InitStart uint64 `json:"initStart"`
	// Cgroup is the cgroup manager's saved state (internal/cgroup.Saved), or
	// null when the container has no cgroup (rootless without delegation).
	Cgroup json.RawMessage `json:"cgroup,omitempty"`
	// Warnings were met during create; the CLI prints each once.
	Warnings []string `json:"warnings,omitempty"`
	HasPty   bool     `json:"hasPty,omitempty"`
}

// Kind implements Message.
func (BootCreated) Kind() string { return "BootCreated" }

// ClientCreateCommitted tells boot the CLI recorded the container.
type ClientCreateCommitted struct{}

// Kind implements Message.
func (ClientCreateCommitted) Kind() string { return "ClientCreateCommitted" }

// ---------------------------------------------------------------------------
// boot <-> init, over the socketpair donated to init as --init-sync-fd.

// BootInitConfig is everything init needs to build the container.
type BootInitConfig struct {
	ID     string      `json:"id"`
	Bundle string      `json:"bundle"`
	Rootfs string      `json:"rootfs"` // absolute host path of the root filesystem
	Spec   *specs.Spec `json:"spec"`
	// CgroupPaths are the container's cgroup directories by controller
	// ("" = unified), for the cgroup mount when there is no cgroup namespace.
	CgroupPaths map[string]string `json:"cgroupPaths,omitempty"`
	// JoinNamespaces lists the namespace types init joins by fd; the fds
	// follow the config message in the same order.
	JoinNamespaces []specs.LinuxNamespaceType `json:"joinNamespaces,omitempty"`
	// PreserveFDs is how many descriptors above stdio init passes to the
	// container process (--preserve-fds plus LISTEN_FDS).
	PreserveFDs int  `json:"preserveFDs"`
	ListenFDs   int  `json:"listenFDs,omitempty"`
	UserNS      bool `json:"userNS,omitempty"` // running inside a user namespace: bind devices, keep locked flags
	Debug       bool `json:"debug,omitempty"`
	// Gofer, when set, replaces direct bind mounts: see GoferPlan.
	Gofer *GoferPlan `json:"gofer,omitempty"`
}

// Kind implements Message.
func (BootInitConfig) Kind() string { return "BootInitConfig" }

// GoferMount is one filesystem `moat gofer` serves: the root, or a bind
// mount of the spec.
type GoferMount struct {
	// SpecIndex is the mount's index in spec.mounts; -1 is the root.
	SpecIndex int `json:"specIndex"`
	// Destination is where it goes in the container, resolved by the gofer
	// inside the root (symlinks followed as the container sees them).
	// Init resolves it again, confined to the root, before mounting.
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
}

// GoferMountsResolved is what the gofer writes on --mounts-fd once its
// jail is ready.
type GoferMountsResolved struct {
	Mounts []GoferMount `json:"mounts"`
}

// Kind implements Message.
func (GoferMountsResolved) Kind() string { return "GoferMountsResolved" }

// InitFuseMounted hands the gofer the /dev/fuse descriptor init mounted for
// one tree, on that tree's io socket. Init keeps no copy: if the gofer dies,
// the kernel aborts the connection.
type InitFuseMounted struct{}

// Kind implements Message.
func (InitFuseMounted) Kind() string { return "InitFuseMounted" }

// GoferPlan tells init to build its root from the gofer's FUSE mounts. The
// io sockets to the gofer (one per mount, same order) follow the namespace
// descriptors in the BootInitConfig message.
type GoferPlan struct {
	Mounts []GoferMount `json:"mounts"`
	// Planned are the bind mounts (spec indices) the plan gave the gofer:
	// one of them missing from Mounts was optional and gone. Every other
	// bind mount is init's to bind, and never a directory the gofer would
	// have served (the plan decided; init checks what it opened).
	Planned []int `json:"planned,omitempty"`
	// Overlay is "memory" (overlay on a tmpfs upper) or "none" (the root is
	// served read-write). A read-only root (root.readonly) has no overlay.
	Overlay     string `json:"overlay"`
	OverlaySize int64  `json:"overlaySize"`
	// SharedRoot: the root (Mounts[0]) is a shared gofer's FUSE mount, a
	// detached clone sent last in place of the root's io socket and
	// /dev/fuse descriptor (--shared-gofer).
	SharedRoot bool `json:"sharedRoot,omitempty"`
}

// InitHooksRequested: init's namespaces and mounts are in place, before
// pivot_root; boot runs the prestart and createRuntime hooks now.
type InitHooksRequested struct{}

// Kind implements Message.
func (InitHooksRequested) Kind() string { return "InitHooksRequested" }

// BootHooksDone answers InitHooksRequested.
type BootHooksDone struct{}

// Kind implements Message.
func (BootHooksDone) Kind() string { return "BootHooksDone" }

// InitCreated: init is pivoted into the container and waits for start.
type InitCreated struct {
	HasPty bool `json:"hasPty,omitempty"`
}

// Kind implements Message.
func (InitCreated) Kind() string { return "InitCreated" }

// InitSeccompListener carries the seccomp notify listener (SCMP_ACT_NOTIFY)
// from init or an exec helper to boot, which forwards it to the spec's
// linux.seccomp.listenerPath. It may precede the EOF of a successful exec.
type InitSeccompListener struct{}

// Kind implements Message.
func (InitSeccompListener) Kind() string { return "InitSeccompListener" }

// BootStartRequested releases init to run the container process. After it,
// init sends nothing on success: EOF on the socket (close-on-exec) means the
// process was executed; InitFailed means it was not.
type BootStartRequested struct{}

// Kind implements Message.
func (BootStartRequested) Kind() string { return "BootStartRequested" }

// ---------------------------------------------------------------------------
// exec: boot <-> the exec helper (`moat init --exec`).
//
//	boot                                   helper (in the container's pid ns)
//	 |-- spawn helper (pid ns joined) ------>|
//	 |-- BootExecConfig + namespace fds ---->| setns each, chdir, wait
//	 |<- InitExecJoined ---------------------|
//	 | put helper in the container cgroup    |
//	 |-- BootExecReleased ------------------>| pty, creds, seccomp, exec
//	 |<- InitPtyCreated + master (if tty) ---|
//	 |<- EOF (executed) / InitFailed --------|

// BootExecConfig tells the exec helper what to run and which namespaces to
// join; the namespace fds follow in Namespaces order. It carries the parts
// of the plan's spec the helper uses, not the spec.
type BootExecConfig struct {
	Process *specs.Process `json:"process"`
	// Seccomp and Personality are the container's (linux.seccomp,
	// linux.personality).
	Seccomp     *specs.LinuxSeccomp        `json:"seccomp,omitempty"`
	Personality *specs.LinuxPersonality    `json:"personality,omitempty"`
	Namespaces  []specs.LinuxNamespaceType `json:"namespaces"`
	// PreserveFDs descriptors follow stdio at 3.. in the helper already.
	PreserveFDs int  `json:"preserveFDs"`
	UserNS      bool `json:"userNS,omitempty"`
	Debug       bool `json:"debug,omitempty"`
}

// Kind implements Message.
func (BootExecConfig) Kind() string { return "BootExecConfig" }

// InitExecJoined: the helper joined the namespaces and waits for release.
type InitExecJoined struct{}

// Kind implements Message.
func (InitExecJoined) Kind() string { return "InitExecJoined" }

// BootExecReleased lets the helper finish and exec.
type BootExecReleased struct{}

// Kind implements Message.
func (BootExecReleased) Kind() string { return "BootExecReleased" }

// InitPtyCreated carries the pty master of a terminal process.
type InitPtyCreated struct{}

// Kind implements Message.
func (InitPtyCreated) Kind() string { return "InitPtyCreated" }

// ---------------------------------------------------------------------------
// The controller: clients (CLI commands, exec proxies) <-> boot, over the
// unix socket in the state directory. One request per connection.
//
//	client                              boot
//	 |-- ClientStartRequested ------------>| release init, poststart hooks
//	 |<- BootStarted / BootFailed ---------|
//
//	 |-- ClientSignalRequested ----------->| kill(2) init, or every process
//	 |<- BootSignalled / BootFailed -------|
//
//	 |-- ClientExecRequested + stdio ----->| spawn the exec helper
//	 |<- BootExecStarted [pty master] -----|
//	 |-- ClientSignalRequested (any time) ->| signal the exec'd process
//	 |<- BootExecExited -------------------| its exit status; connection ends

// ClientStartRequested asks boot to start the container process.
type ClientStartRequested struct{}

// Kind implements Message.
func (ClientStartRequested) Kind() string { return "ClientStartRequested" }

// BootStarted: the container process was executed and poststart hooks ran.
type BootStarted struct {
	Warnings []string `json:"warnings,omitempty"`
}

// Kind implements Message.
func (BootStarted) Kind() string { return "BootStarted" }

// ClientSignalRequested asks boot to send Signal to the container init (or,
// with All, to every container process; on an exec connection, to the
// exec'd process).
type ClientSignalRequested struct {
	Signal int  `json:"signal"`
	All    bool `json:"all,omitempty"`
}

// Kind implements Message.
func (ClientSignalRequested) Kind() string { return "ClientSignalRequested" }

// BootSignalled answers ClientSignalRequested.
type BootSignalled struct{}

// Kind implements Message.
func (BootSignalled) Kind() string { return "BootSignalled" }

// ClientPsRequested asks boot for the container's host pids.
type ClientPsRequested struct{}

// Kind implements Message.
func (ClientPsRequested) Kind() string { return "ClientPsRequested" }

// BootPs answers ClientPsRequested.
type BootPs struct {
	Pids []int `json:"pids"`
}

// Kind implements Message.
func (BootPs) Kind() string { return "BootPs" }

// ClientPortRequested adds ("add") or removes ("rm") a port forward of the
// sandbox network, or lists them ("ls"). Publish is in --publish syntax.
type ClientPortRequested struct {
	Op      PortOp `json:"op"`
	Publish string `json:"publish,omitempty"`
}

// Kind implements Message.
func (ClientPortRequested) Kind() string { return "ClientPortRequested" }

// BootPorts answers ClientPortRequested with the forwards in place after it,
// as hostIP:hostPort:containerPort/proto (host port 0 resolved).
type BootPorts struct {
	Forwards []string `json:"forwards"`
}

// Kind implements Message.
func (BootPorts) Kind() string { return "BootPorts" }

// ClientExecRequested asks boot to run Process in the container. Its fds are
// stdin, stdout, stderr, then PreserveFDs more (unless Terminal, in which case
// stdio is not sent: the pty master comes back instead).
type ClientExecRequested struct {
	Process     *specs.Process `json:"process"`
	PreserveFDs int            `json:"preserveFDs"`
	// Detached: the connection stands for the process (exec --detach's
	// proxy); if it closes before the process ends, boot kills the process,
	// as a shim's SIGKILL to runc's exec'd pid would.
	Detached bool `json:"detached,omitempty"`
}

// Kind implements Message.
func (ClientExecRequested) Kind() string { return "ClientExecRequested" }

// BootExecStarted: the process runs; Pid is its host pid.
type BootExecStarted struct {
	Pid    int  `json:"pid"`
	HasPty bool `json:"hasPty,omitempty"`
}

// Kind implements Message.
func (BootExecStarted) Kind() string { return "BootExecStarted" }

// BootExecExited reports the exec'd process's end: ExitCode is its status,
// or 128+signal if a signal killed it.
type BootExecExited struct {
	ExitCode int `json:"exitCode"`
}

// Kind implements Message.
func (BootExecExited) Kind() string { return "BootExecExited" }
