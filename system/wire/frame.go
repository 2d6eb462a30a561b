// Package wire is zzim's protocol: the frame codec shared by app and internal
// links, the protobuf bodies (app.proto, internal.proto), op numbers, and login
// tokens.
//
// A frame is
//
//	len u32 | ver u8 | op u8 | flags u8 | reserved u8 | reqID u32 | body
//
// big-endian, where len counts every byte after the len field (header rest
// plus body). Bodies are protobuf.
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative -I . app.proto internal.proto

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// Version is the only protocol version this build speaks.
	Version = 1
	// HeaderSize is the fixed header: len(4) ver(1) op(1) flags(1) reserved(1) reqID(4).
	HeaderSize = 12
	// FrameSizeMax bounds a whole frame, header included. A peer that announces
	// more is cut off: nothing it sends after can be trusted to be framed right.
	FrameSizeMax = 64 << 10
	// BodySizeMax is what is left for the protobuf body.
	BodySizeMax = FrameSizeMax - HeaderSize
)

// Sentinel errors of the codec. A decode error other than ErrShort poisons the
// stream: the connection must be closed.
var (
	ErrShort     = errors.New("wire: short frame")
	ErrOversized = errors.New("wire: frame exceeds FrameSizeMax")
	ErrVersion   = errors.New("wire: unknown protocol version")
	ErrUnknownOp = errors.New("wire: unknown op")
	ErrGarbage   = errors.New("wire: garbage frame")
)

// Frame is one decoded frame. Body aliases the input buffer on Decode.
type Frame struct {
	Op    Op
	Flags uint8
	ReqID uint32
	Body  []byte
}

// Size is the encoded size of the frame.
func (f Frame) Size() int { return HeaderSize + len(f.Body) }

// AppendFrame appends f's encoding to dst.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	if f.Size() > FrameSizeMax {
		return dst, fmt.Errorf("%w: %d bytes", ErrOversized, f.Size())
	}
	if !f.Op.Known() {
		return dst, fmt.Errorf("%w: %d", ErrUnknownOp, f.Op)
	}
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(f.Size()-4))
	h[4] = Version
	h[5] = byte(f.Op)
	h[6] = f.Flags
	h[7] = 0
	binary.BigEndian.PutUint32(h[8:12], f.ReqID)
	dst = append(dst, h[:]...)
	return append(dst, f.Body...), nil
}

// Decode reads one frame from the front of buf. It returns the frame and the
// number of bytes consumed. ErrShort means buf holds only part of a frame:
// read more and call again. Any other error means the stream is corrupt.
func Decode(buf []byte) (Frame, int, error) {
	if len(buf) < 4 {
		return Frame{}, 0, ErrShort
	}
	n := int(binary.BigEndian.Uint32(buf[0:4]))
	total := n + 4
	if total > FrameSizeMax {
		return Frame{}, 0, fmt.Errorf("%w: announced %d bytes", ErrOversized, total)
	}
	if total < HeaderSize {
		return Frame{}, 0, fmt.Errorf("%w: announced length %d below header size", ErrGarbage, total)
	}
	if len(buf) >= 5 && buf[4] != Version {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrVersion, buf[4])
	}
	if len(buf) >= 6 && !Op(buf[5]).Known() {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrUnknownOp, buf[5])
	}
	if len(buf) >= 8 && buf[7] != 0 {
		return Frame{}, 0, fmt.Errorf("%w: reserved byte %d", ErrGarbage, buf[7])
	}
	if len(buf) < total {
		return Frame{}, 0, ErrShort
	}
	f := Frame{
		Op:    Op(buf[5]),
		Flags: buf[6],
		ReqID: binary.BigEndian.Uint32(buf[8:12]),
		Body:  buf[HeaderSize:total],
	}
	return f, total, nil
}
