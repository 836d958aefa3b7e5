package ipc

// PortOp is an operation of `moat port`.
type PortOp string

// Port operations, as `moat port` names them.
const (
	PortList   PortOp = "ls"
	PortAdd    PortOp = "add"
	PortRemove PortOp = "rm"
)
