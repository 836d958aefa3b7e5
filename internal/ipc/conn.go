// Package ipc is the wire between moat's processes: the CLI, `moat boot`,
// `moat gofer` and the container init helper. It holds only message types and
// their framing; no process role's logic lives here, so every role may import
// it (DESIGN.md, Layout).
//
// Framing: every message is a 4-byte big-endian length followed by a JSON
// envelope {"type": NAME, "body": {...}}. File descriptors travel with a
// message as SCM_RIGHTS ancillary data attached to its first byte. Every read
// ends on peer EOF and honours the connection's deadline.
package ipc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MaxMessage bounds one message body so a confused or hostile peer cannot make
// us allocate without limit. A spec with a large seccomp profile is ~100 KiB.
const MaxMessage = 16 << 20

// maxFDs bounds the descriptors one message may carry.
const maxFDs = 64

// ErrPeerClosed is returned when the other end closed the connection before
// a whole message arrived: the peer exited or crashed.
var ErrPeerClosed = errors.New("peer closed the connection")

// Conn is one end of a unix stream socket carrying framed messages.
// A Conn is not safe for concurrent Send or concurrent Recv; one sender and
// one receiver may run at the same time.
type Conn struct {
	f *os.File
}

// NewConn wraps a connected unix stream socket. It takes ownership of f.
func NewConn(f *os.File) *Conn { return &Conn{f: f} }

// FromFD wraps an inherited descriptor (a donated --<purpose>-fd).
func FromFD(fd int, name string) (*Conn, error) {
	if fd < 0 {
		return nil, fmt.Errorf("%s: no descriptor given", name)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("%s: fd %d: %w", name, fd, err)
	}
	return &Conn{f: os.NewFile(uintptr(fd), name)}, nil
}

// Pair returns two connected ends of a new socketpair, both close-on-exec.
func Pair(name string) (*Conn, *Conn, error) {
	a, b, err := SocketPair(name)
	if err != nil {
		return nil, nil, err
	}
	return NewConn(a), NewConn(b), nil
}

// SocketPair returns the raw files of a new unix stream socketpair, both
// close-on-exec, for callers that donate one end to a child process.
func SocketPair(name string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
	}
	for _, fd := range fds {
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
			return nil, nil, fmt.Errorf("socketpair %s: %w", name, err)
		}
	}
	return os.NewFile(uintptr(fds[0]), name+"-a"), os.NewFile(uintptr(fds[1]), name+"-b"), nil
}

// File returns the underlying socket (for donation to a child).
func (c *Conn) File() *os.File { return c.f }

// Close closes the connection.
func (c *Conn) Close() error { return c.f.Close() }

// SetDeadline bounds every following Send and Recv; the zero time removes it.
func (c *Conn) SetDeadline(t time.Time) error { return c.f.SetDeadline(t) }

type envelope struct {
	Type string          `json:"type"`
	Body json.RawMessage `json:"body,omitempty"`
}

// Send writes one message and the given descriptors (which stay owned by the
// caller).
func (c *Conn) Send(m Message, fds ...int) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Kind(), err)
	}
	env, err := json.Marshal(envelope{Type: m.Kind(), Body: body})
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Kind(), err)
	}
	buf := make([]byte, 4+len(env))
	binary.BigEndian.PutUint32(buf, uint32(len(env)))
	copy(buf[4:], env)
	if err := c.sendmsg(buf, fds); err != nil {
		return fmt.Errorf("send %s: %w", m.Kind(), err)
	}
	return nil
}

func (c *Conn) sendmsg(buf []byte, fds []int) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for len(buf) > 0 {
		var n int
		var serr error
		werr := rc.Write(func(fd uintptr) bool {
			n, serr = unix.SendmsgN(int(fd), buf, oob, nil, unix.MSG_NOSIGNAL)
			return serr != unix.EAGAIN
		})
		if werr != nil {
			return werr
		}
		if serr != nil {
			if serr == unix.EPIPE || serr == unix.ECONNRESET {
				return ErrPeerClosed
			}
			return serr
		}
		buf, oob = buf[n:], nil
	}
	return nil
}

// Raw is a received message before its body is decoded.
type Raw struct {
	Type string
	Body json.RawMessage
	// Files are the descriptors that came with the message; the receiver owns them.
	Files []*os.File
}

// CloseFiles closes every descriptor that came with the message.
func (r *Raw) CloseFiles() {
	for _, f := range r.Files {
		f.Close()
	}
	r.Files = nil
}

// Recv reads the next message.
func (c *Conn) Recv() (*Raw, error) {
	hdr := make([]byte, 4)
	files, err := c.recvHeader(hdr)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > MaxMessage {
		closeAll(files)
		return nil, fmt.Errorf("message of %d bytes exceeds the %d limit", n, MaxMessage)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.f, body); err != nil {
		closeAll(files)
		return nil, eofToPeerClosed(err)
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		closeAll(files)
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return &Raw{Type: env.Type, Body: env.Body, Files: files}, nil
}

func (c *Conn) recvHeader(hdr []byte) ([]*os.File, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	var n, oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), hdr, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	files, perr := parseRights(oob[:oobn])
	if perr != nil {
		return nil, perr
	}
	if n == 0 {
		closeAll(files)
		return nil, ErrPeerClosed
	}
	if n < len(hdr) {
		if _, err := io.ReadFull(c.f, hdr[n:]); err != nil {
			closeAll(files)
			return nil, eofToPeerClosed(err)
		}
	}
	return files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "received"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func eofToPeerClosed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrPeerClosed
	}
	return err
}

// SpecMemfd puts v (a spec, or the plan) as JSON in a memfd, positioned at
// its start, for a child's descriptor (boot's --plan-fd): the child reads
// exactly what the parent checked, never the bundle's file again.
func SpecMemfd(v any) (*os.File, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	fd, err := unix.MemfdCreate("moat-spec", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "spec")
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("write spec: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
