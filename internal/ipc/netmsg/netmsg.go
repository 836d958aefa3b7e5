// Package netmsg holds the messages between boot and `moat net`, the
// sandbox network's process. They carry the network package's own types, so
// they live beside package ipc (which the network package imports) rather
// than in it; the framing is ipc's.
package netmsg

import (
	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/network"
)

// ---------------------------------------------------------------------------
// net: boot <-> `moat net`, over the socketpair donated as --net-sync-fd.
//
//	boot                                          net
//	 |-- spawn (new mnt ns, --net-sync-fd) ------->| pivots into an empty root,
//	 |                                             | drops every capability,
//	 |                                             | no_new_privs, seccomp
//	 | creates the TAP in init's netns,            |
//	 | opens the published ports' sockets          |
//	 |-- BootNetConfig [TAP, one per forward] ---->| netstack, NAT, DNS, forwards
//	 |<- NetStarted (or NetFailed) ----------------|
//	 |-- BootNetPortRequested [socket for add] --->| (`moat port`, via boot)
//	 |<- NetPorts (or NetFailed) ------------------|
//	 | ... boot closes its end at teardown ------->| closes the network, exits
//
// The net process never opens a host socket that needs a privilege: boot
// binds the published ports (privileged ones as root) and donates them.

// BootNetConfig hands the net process its settings (parsed by boot from the
// plan and flags: the effective DNS servers included). Its descriptors are
// the TAP, then one bound socket per Settings.Forwards, in order
// (network.ListenForward).
type BootNetConfig struct {
	Settings network.Settings `json:"settings"`
}

// Kind implements Message.
func (BootNetConfig) Kind() string { return "BootNetConfig" }

// NetStarted says the network runs, with the forwards in place (host port
// 0 resolved).
type NetStarted struct {
	Forwards []network.Forward `json:"forwards"`
}

// Kind implements Message.
func (NetStarted) Kind() string { return "NetStarted" }

// BootNetPortRequested adds, removes or lists forwards. With ipc.PortAdd comes
// the forward's bound socket (network.ListenForward); Forward is as
// requested for ipc.PortAdd, as listed for ipc.PortRemove, empty for ipc.PortList.
type BootNetPortRequested struct {
	Op      ipc.PortOp      `json:"op"`
	Forward network.Forward `json:"forward"`
}

// Kind implements Message.
func (BootNetPortRequested) Kind() string { return "BootNetPortRequested" }

// NetPorts answers BootNetPortRequested with the forwards in place after it.
type NetPorts struct {
	Forwards []network.Forward `json:"forwards"`
}

// Kind implements Message.
func (NetPorts) Kind() string { return "NetPorts" }
