package network

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
)

// Just enough DNS message parsing (RFC 1035 §4) to read the question name,
// collect the A/AAAA answers of a response, and build a header-only error
// reply. Responses are otherwise relayed byte for byte.

const (
	dnsHeaderLen = 12
	dnsTypeA     = 1
	dnsTypeAAAA  = 28
	dnsClassIN   = 1

	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeRefused  = 5
)

var errDNSMsg = errors.New("malformed DNS message")

type dnsQuestion struct {
	name         string // lower case, no trailing dot ("" for the root)
	qtype, class uint16
	end          int // offset just past the question
}

// parseQuestion returns the first question of msg and the number of
// questions the header announces.
func parseQuestion(msg []byte) (dnsQuestion, int, error) {
	if len(msg) < dnsHeaderLen {
		return dnsQuestion{}, 0, errDNSMsg
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	if qd == 0 {
		return dnsQuestion{}, 0, errDNSMsg
	}
	name, off, err := readName(msg, dnsHeaderLen)
	if err != nil || off+4 > len(msg) {
		return dnsQuestion{}, qd, errDNSMsg
	}
	q := dnsQuestion{
		name:  name,
		qtype: binary.BigEndian.Uint16(msg[off:]),
		class: binary.BigEndian.Uint16(msg[off+2:]),
		end:   off + 4,
	}
	return q, qd, nil
}

// readName decodes the (possibly compressed) name at off and returns it with
// the offset just past it in the original position.
func readName(msg []byte, off int) (string, int, error) {
	var labels []string
	next := -1
	total := 0
	for jumps := 0; ; {
		if off >= len(msg) {
			return "", 0, errDNSMsg
		}
		l := int(msg[off])
		switch {
		case l == 0:
			if next < 0 {
				next = off + 1
			}
			return strings.ToLower(strings.Join(labels, ".")), next, nil
		case l&0xc0 == 0xc0:
			if off+1 >= len(msg) || jumps > 64 {
				return "", 0, errDNSMsg
			}
			if next < 0 {
				next = off + 2
			}
			off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
			jumps++
		case l&0xc0 != 0:
			return "", 0, errDNSMsg
		default:
			if off+1+l > len(msg) {
				return "", 0, errDNSMsg
			}
			total += l + 1
			if total > 255 {
				return "", 0, errDNSMsg
			}
			labels = append(labels, string(msg[off+1:off+1+l]))
			off += 1 + l
		}
	}
}

// dnsRR is one resource record's fixed fields and data.
type dnsRR struct {
	typ, class uint16
	ttl        uint32
	data       []byte
}

// answers calls fn for each record of the answer section of a response.
func answers(msg []byte, fn func(dnsRR)) error {
	if len(msg) < dnsHeaderLen {
		return errDNSMsg
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	an := int(binary.BigEndian.Uint16(msg[6:]))
	off := dnsHeaderLen
	for i := 0; i < qd; i++ {
		_, n, err := readName(msg, off)
		if err != nil || n+4 > len(msg) {
			return errDNSMsg
		}
		off = n + 4
	}
	for i := 0; i < an; i++ {
		_, n, err := readName(msg, off)
		if err != nil || n+10 > len(msg) {
			return errDNSMsg
		}
		rr := dnsRR{
			typ:   binary.BigEndian.Uint16(msg[n:]),
			class: binary.BigEndian.Uint16(msg[n+2:]),
			ttl:   binary.BigEndian.Uint32(msg[n+4:]),
		}
		dl := int(binary.BigEndian.Uint16(msg[n+8:]))
		if n+10+dl > len(msg) {
			return errDNSMsg
		}
		rr.data = msg[n+10 : n+10+dl]
		fn(rr)
		off = n + 10 + dl
	}
	return nil
}

// answerAddrs calls fn for every A and AAAA answer of a response.
func answerAddrs(msg []byte, fn func(netip.Addr, uint32)) error {
	return answers(msg, func(rr dnsRR) {
		if rr.class != dnsClassIN {
			return
		}
		if (rr.typ == dnsTypeA && len(rr.data) == 4) || (rr.typ == dnsTypeAAAA && len(rr.data) == 16) {
			a, _ := netip.AddrFromSlice(rr.data)
			fn(a.Unmap(), rr.ttl)
		}
	})
}

// errorReply builds a response to query with rcode and no records, echoing
// the first question when it parses.
func errorReply(query []byte, rcode int) []byte {
	if len(query) < dnsHeaderLen {
		return nil
	}
	out := make([]byte, dnsHeaderLen, dnsHeaderLen+64)
	copy(out, query[:4])              // id, flags
	out[2] = 0x80 | (query[2] & 0x79) // QR=1, opcode and RD kept
	out[3] = 0x80 | byte(rcode&0x0f)  // RA=1, rcode
	if q, _, err := parseQuestion(query); err == nil {
		binary.BigEndian.PutUint16(out[4:], 1) // QDCOUNT
		out = append(out, query[dnsHeaderLen:q.end]...)
	}
	return out
}
