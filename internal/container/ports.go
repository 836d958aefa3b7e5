package container

import (
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/moat-sandbox/moat/internal/ipc"
	"github.com/moat-sandbox/moat/internal/sandbox"
)

// Port operations of `moat port`.
const (
	PortList   = string(ipc.PortList)
	PortAdd    = string(ipc.PortAdd)
	PortRemove = string(ipc.PortRemove)
)

// Ports adds or removes a port forward of a container's sandbox network
// (publish in --publish syntax), or lists them; it returns the forwards in
// place afterwards. Boot owns the network, so boot does the work.
func (r *Runtime) Ports(id, op, publish string) ([]string, error) {
	switch op {
	case PortList, PortAdd, PortRemove:
	default:
		return nil, fmt.Errorf("port %q: want ls, add or rm", op)
	}
	s, err := r.Store.Load(id)
	if err != nil {
		return nil, err
	}
	if st := Status(s); st == specs.StateStopped {
		return nil, wrongState(id, "port "+op, st)
	}
	var reply ipc.BootPorts
	req := ipc.ClientPortRequested{Op: ipc.PortOp(op), Publish: publish}
	if err := sandbox.Request(s.ControllerPath(), req, &reply, 10*time.Second); err != nil {
		return nil, fmt.Errorf("port %s %s: %w", op, id, err)
	}
	if reply.Forwards == nil {
		reply.Forwards = []string{}
	}
	return reply.Forwards, nil
}
