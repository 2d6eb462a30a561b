package sim

import (
	"encoding/binary"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// traceHash folds every handled event into one word: its time, target,
// kind and a digest of its content. Same seed, same hash. Each word is
// mixed in whole (xor, multiply by the FNV prime, fold the high half
// down) rather than byte by byte: three multiplies an event instead of 24.
type traceHash uint64

const fnvPrime = 1099511628211

func newTraceHash() traceHash { return traceHash(14695981039346656037) }

func (h *traceHash) word(v uint64) {
	x := (uint64(*h) ^ v) * fnvPrime
	*h = traceHash(x ^ x>>32)
}

func (h *traceHash) add(at int64, target int32, kind evKind, digest uint64) {
	h.word(uint64(at))
	h.word(uint64(uint32(target))<<8 | uint64(kind))
	h.word(digest)
}

// fnvAddr folds an address by its fields, without formatting it.
func fnvAddr(d uint64, a node.Addr) uint64 {
	return fnvWord(fnvString(d, string(a.Role)), uint64(a.Slot))
}

// fnvString folds s into d.
func fnvString(d uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		d ^= uint64(s[i])
		d *= fnvPrime
	}
	return d
}

// fnvBytes folds b into d eight bytes at a time (then the tail, and the
// length, so bodies that differ only in trailing zero bytes still differ):
// message bodies are most of what the digests read.
func fnvBytes(d uint64, b []byte) uint64 {
	for len(b) >= 8 {
		d ^= binary.LittleEndian.Uint64(b)
		d *= fnvPrime
		b = b[8:]
	}
	var tail uint64
	for i, c := range b {
		tail |= uint64(c) << (8 * i)
	}
	d ^= tail<<8 | uint64(len(b))
	d *= fnvPrime
	return d
}

func fnvWord(d, v uint64) uint64 {
	d ^= v
	d *= fnvPrime
	return d
}

// digestNodeEvent summarises an event's content without reflection or
// encoding: its type and the fields that identify it.
func digestNodeEvent(ev node.Event) uint64 {
	d := uint64(14695981039346656037)
	switch ev := ev.(type) {
	case node.Recv:
		d = fnvWord(fnvAddr(d, ev.From), 1)
		d = digestMessage(d, ev.Msg)
	case node.LinkUp:
		d = fnvAddr(fnvWord(d, 2), ev.Peer)
	case node.LinkDown:
		d = fnvAddr(fnvWord(d, 3), ev.Peer)
	case node.ClientConnect:
		d = fnvWord(fnvWord(d, 4), uint64(ev.Conn))
	case node.ClientFrame:
		d = fnvWord(fnvWord(d, 5), uint64(ev.Conn))
		d = fnvWord(fnvWord(d, uint64(ev.Frame.Op)), uint64(ev.Frame.ReqID))
		d = fnvBytes(d, ev.Frame.Body)
	case node.ClientDisconnect:
		d = fnvWord(fnvWord(d, 6), uint64(ev.Conn))
	case node.HTTPRequest:
		d = fnvString(fnvWord(fnvWord(d, 7), uint64(ev.Conn)), ev.Path)
		d = fnvBytes(d, ev.Body)
	case node.HTTPCanceled:
		d = fnvWord(fnvWord(d, 8), uint64(ev.Conn))
	case node.Timer:
		d = fnvWord(fnvWord(d, 9), uint64(ev.ID))
	case node.Completion:
		d = fnvWord(fnvWord(fnvWord(d, 10), uint64(ev.Req)), uint64(ev.Outcome))
		if ev.Store != nil {
			for _, a := range ev.Store.Append {
				d = fnvWord(d, a.Seq)
			}
			d = fnvWord(fnvWord(d, ev.Store.Sync.LastSeq), uint64(len(ev.Store.Sync.Messages)))
		}
		if ev.Presence != nil {
			d = fnvWord(d, uint64(len(ev.Presence.Found)))
		}
	case node.Delivery:
		d = fnvWord(fnvWord(fnvWord(d, 11), uint64(ev.ID)), uint64(ev.NumDelivered))
		d = fnvString(d, ev.MsgID)
	case node.View:
		d = fnvString(fnvWord(d, 12), string(ev.Role))
		for _, a := range ev.Alive {
			if a {
				d = fnvWord(d, 1)
			} else {
				d = fnvWord(d, 0)
			}
		}
	}
	return d
}

// digestMessage folds the identifying fields of an internal message.
func digestMessage(d uint64, m node.Message) uint64 {
	switch m := m.(type) {
	case *wire.ClientRequest:
		d = fnvString(fnvWord(fnvWord(d, uint64(m.Op)), uint64(m.ReqId)), m.UserId)
		d = fnvBytes(d, m.Body)
	case *wire.ClientResponse:
		d = fnvWord(fnvWord(fnvWord(d, 101), uint64(m.Op)), uint64(m.ReqId))
		d = fnvBytes(d, m.Body)
	case *wire.StoreRequest:
		d = fnvWord(fnvWord(d, 102), m.ReqId)
	case *wire.StoreReply:
		d = fnvWord(fnvWord(fnvWord(d, 103), m.ReqId), uint64(m.Outcome))
		if m.Append != nil {
			d = fnvWord(d, m.Append.Seq)
		}
	case *wire.PushRequest:
		d = fnvWord(fnvWord(fnvWord(d, 104), uint64(len(m.Targets))), uint64(len(m.Messages)))
		for _, msg := range m.Messages {
			d = fnvWord(d, msg.Seq)
		}
	case *wire.PushFailed:
		d = fnvString(fnvWord(d, 105), m.UserId)
	case *wire.KickRequest:
		d = fnvWord(d, 106)
	case *wire.SessionClosed:
		d = fnvString(fnvWord(d, 107), m.UserId)
	default:
		d = fnvWord(d, 199)
	}
	return d
}

// digestClientEvent does the same for client events.
func digestClientEvent(ev client.Event) uint64 {
	d := uint64(14695981039346656037)
	switch ev := ev.(type) {
	case client.Connected:
		d = fnvWord(d, 1)
	case client.Disconnected:
		d = fnvString(fnvWord(d, 2), ev.Reason)
	case client.FrameIn:
		d = fnvWord(fnvWord(fnvWord(d, 3), uint64(ev.Frame.Op)), uint64(ev.Frame.ReqID))
		d = fnvBytes(d, ev.Frame.Body)
	case client.HTTPResponse:
		d = fnvWord(fnvWord(fnvWord(d, 4), uint64(ev.Req)), uint64(ev.Status))
		d = fnvBytes(d, ev.Body)
	case client.Timer:
		d = fnvWord(fnvWord(d, 5), uint64(ev.ID))
	}
	return d
}
