package live

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/zzim/zzim/system/wire"
)

// readFrame reads one whole frame from r into a fresh buffer the frame owns.
// A length beyond wire.FrameSizeMax is refused before anything is allocated.
func readFrame(r *bufio.Reader) (wire.Frame, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return wire.Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(lenBuf[:]))
	if n+4 > wire.FrameSizeMax {
		return wire.Frame{}, fmt.Errorf("%w: announced %d bytes", wire.ErrOversized, n+4)
	}
	if n+4 < wire.HeaderSize {
		return wire.Frame{}, fmt.Errorf("%w: announced length %d below header size", wire.ErrGarbage, n+4)
	}
	buf := make([]byte, n+4)
	copy(buf, lenBuf[:])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := wire.Decode(buf)
	return f, err
}
