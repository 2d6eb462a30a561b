package live

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/zzim/zzim/system/wire"
)

// frameLen checks a frame's 4-byte length prefix and returns the whole
// frame's size, prefix included. A length beyond wire.FrameSizeMax or
// below the header is refused before anything is allocated.
func frameLen(prefix []byte) (int, error) {
	n := int(binary.BigEndian.Uint32(prefix)) + 4
	if n > wire.FrameSizeMax {
		return 0, fmt.Errorf("%w: announced %d bytes", wire.ErrOversized, n)
	}
	if n < wire.HeaderSize {
		return 0, fmt.Errorf("%w: announced length %d below header size", wire.ErrGarbage, n)
	}
	return n, nil
}

// readFrame reads one whole frame from r into a fresh buffer the frame owns.
func readFrame(r *bufio.Reader) (wire.Frame, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return wire.Frame{}, err
	}
	n, err := frameLen(lenBuf[:])
	if err != nil {
		return wire.Frame{}, err
	}
	buf := make([]byte, n)
	copy(buf, lenBuf[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := wire.Decode(buf)
	return f, err
}

// assemble cuts the bytes one read returned into frames, without a read
// buffer per connection: partial is the frame begun by earlier reads (nil
// between frames; its capacity is the frame's size once the length prefix
// is known, 4 before). Every complete frame is decoded into a buffer of its
// own (never aliasing data, which the caller reuses) and handed to emit;
// emit returning false stops at once. It returns the incomplete frame's
// bytes, nil if data ended on a frame boundary. An error poisons the
// connection: nothing after it can be trusted to be framed right.
func assemble(partial, data []byte, emit func(wire.Frame) bool) ([]byte, error) {
	for len(data) > 0 {
		if partial == nil && len(data) >= 4 {
			n, err := frameLen(data[:4])
			if err != nil {
				return nil, err
			}
			if len(data) < n {
				partial = make([]byte, len(data), n)
				copy(partial, data)
				return partial, nil
			}
			buf := make([]byte, n)
			copy(buf, data[:n])
			data = data[n:]
			f, _, err := wire.Decode(buf)
			if err != nil {
				return nil, err
			}
			if !emit(f) {
				return nil, nil
			}
			continue
		}
		if len(partial) < 4 {
			if partial == nil {
				partial = make([]byte, 0, 4)
			}
			k := min(4-len(partial), len(data))
			partial, data = append(partial, data[:k]...), data[k:]
			if len(partial) < 4 {
				return partial, nil
			}
			n, err := frameLen(partial)
			if err != nil {
				return nil, err
			}
			grown := make([]byte, 4, n)
			copy(grown, partial)
			partial = grown
		}
		k := min(cap(partial)-len(partial), len(data))
		partial, data = append(partial, data[:k]...), data[k:]
		if len(partial) < cap(partial) {
			return partial, nil
		}
		f, _, err := wire.Decode(partial)
		partial = nil
		if err != nil {
			return nil, err
		}
		if !emit(f) {
			return nil, nil
		}
	}
	return partial, nil
}
