package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzDecode seeds")

const seedDir = "testdata/fuzz/FuzzDecode"

// Bounds on the work one fuzz input costs: inputs up to splitEveryMax bytes
// are split at every byte boundary, longer ones at about splitCountMax
// evenly spaced boundaries; byte-at-a-time feeding is for inputs up to
// byteFeedMax bytes.
const (
	splitEveryMax = 1 << 10
	splitCountMax = 256
	byteFeedMax   = 16 << 10
)

// streamResult is what a reader of a byte stream makes of it.
type streamResult struct {
	frames   []wire.Frame // bodies copied
	consumed int
	end      error // nil: ended on a frame boundary; ErrShort: mid-frame; else the poison
}

// decodeStream feeds chunks to the loop a connection reader runs: append what
// arrived, Decode until ErrShort, stop at any other error (the connection
// would close). Whole checks each decoded frame against its bytes.
func decodeStream(t *testing.T, chunks [][]byte, whole bool) streamResult {
	var res streamResult
	var buf []byte
	for _, chunk := range chunks {
		buf = append(buf, chunk...)
		for {
			f, n, err := wire.Decode(buf)
			if err != nil {
				if n != 0 {
					t.Fatalf("error %v with %d bytes consumed, want 0", err, n)
				}
				if errors.Is(err, wire.ErrShort) {
					break
				}
				res.end = classify(t, err)
				return res
			}
			if n < wire.HeaderSize || n > len(buf) || n != f.Size() || n > wire.FrameSizeMax {
				t.Fatalf("consumed %d of %d bytes for a frame of size %d", n, len(buf), f.Size())
			}
			if whole {
				checkFrame(t, f, buf[:n])
			}
			f.Body = bytes.Clone(f.Body)
			res.frames = append(res.frames, f)
			res.consumed += n
			buf = buf[n:]
		}
	}
	if len(buf) > 0 {
		res.end = wire.ErrShort
	}
	return res
}

// checkFrame: a decoded frame re-encodes to the bytes it came from, and its
// body either parses or is reported as garbage.
func checkFrame(t *testing.T, f wire.Frame, raw []byte) {
	if !f.Op.Known() {
		t.Fatalf("decoded unknown op %d", f.Op)
	}
	again, err := wire.AppendFrame(nil, f)
	if err != nil {
		t.Fatalf("re-encode %+v: got error %v, want nil", f, err)
	}
	if !bytes.Equal(again, raw) {
		t.Fatalf("re-encode: got %x, want %x", again, raw)
	}
	m, err := wire.DecodeBody(f)
	if err != nil {
		if !errors.Is(err, wire.ErrGarbage) {
			t.Fatalf("DecodeBody: got error %v, want nil or ErrGarbage", err)
		}
		return
	}
	if op, err := wire.OpOf(m); err != nil || op != f.Op {
		t.Fatalf("OpOf(DecodeBody(%s)): got %v, %v", f.Op, op, err)
	}
}

// classify names the sentinel err wraps; a decode error wraps exactly one.
func classify(t *testing.T, err error) error {
	var found []error
	for _, s := range []error{wire.ErrShort, wire.ErrOversized, wire.ErrVersion, wire.ErrUnknownOp, wire.ErrGarbage} {
		if errors.Is(err, s) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("error %v: got %d sentinels, want exactly one", err, len(found))
	}
	return found[0]
}

func sameResult(t *testing.T, what string, got, want streamResult) {
	if got.consumed != want.consumed || got.end != want.end || len(got.frames) != len(want.frames) {
		t.Fatalf("%s: got %d frames, %d bytes, end %v; whole input gave %d frames, %d bytes, end %v",
			what, len(got.frames), got.consumed, got.end, len(want.frames), want.consumed, want.end)
	}
	for i := range got.frames {
		g, w := got.frames[i], want.frames[i]
		if g.Op != w.Op || g.Flags != w.Flags || g.ReqID != w.ReqID || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("%s: frame %d: got %+v, whole input gave %+v", what, i, g, w)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := decodeStream(t, [][]byte{data}, true)
		if whole.consumed > len(data) {
			t.Fatalf("consumed %d of %d bytes", whole.consumed, len(data))
		}
		step := 1
		if len(data) > splitEveryMax {
			step = len(data) / splitCountMax
		}
		for i := 1; i < len(data); i += step {
			split := decodeStream(t, [][]byte{data[:i], data[i:]}, false)
			sameResult(t, fmt.Sprintf("split at %d", i), split, whole)
		}
		if len(data) <= byteFeedMax {
			chunks := make([][]byte, len(data))
			for i := range data {
				chunks[i] = data[i : i+1]
			}
			sameResult(t, "byte at a time", decodeStream(t, chunks, false), whole)
		}
	})
}

// seed is one corpus input and what decoding it must give.
type seed struct {
	name   string
	data   []byte
	frames int
	end    error
}

func frameBytes(t testing.TB, reqID uint32, m proto.Message) []byte {
	f, err := wire.EncodeMessage(reqID, m)
	if err != nil {
		t.Fatalf("encode %T: %v", m, err)
	}
	b, err := wire.AppendFrame(nil, f)
	if err != nil {
		t.Fatalf("frame %T: %v", m, err)
	}
	return b
}

func seeds(t testing.TB) []seed {
	login := frameBytes(t, 1, &wire.Login{Token: "alice.1700000000.c2lnbmF0dXJl", DeviceId: "phone"})
	send := frameBytes(t, 2, &wire.Send{ConvId: "p:alice:bob:lst1", ClientMsgId: "alice-phone-1", Cseq: 1, Body: "안녕 🙂", AckFloor: 1})
	storeReq := frameBytes(t, 0, &wire.StoreRequest{ReqId: 9, ReplyTo: "logic-1", Sync: &wire.SyncOp{ConvId: "s:alice", AfterSeq: 3, Limit: 50}})
	heartbeat := frameBytes(t, 3, &wire.Heartbeat{})
	stream := bytes.Join([][]byte{login, heartbeat, send, storeReq}, nil)
	badVersion := bytes.Clone(send)
	badVersion[4] = wire.Version + 1
	unknownOp := bytes.Clone(heartbeat)
	unknownOp[5] = 63
	reserved := bytes.Clone(heartbeat)
	reserved[7] = 1
	garbageBody := append(header(3, wire.Version, byte(wire.OpSend), 0), 0xff, 0xff, 0xff)
	return []seed{
		{name: "login", data: login, frames: 1},
		{name: "send", data: send, frames: 1},
		{name: "store-request", data: storeReq, frames: 1},
		{name: "heartbeat-empty-body", data: heartbeat, frames: 1},
		{name: "stream-four-frames", data: stream, frames: 4},
		{name: "stream-then-truncated", data: stream[:len(stream)-5], frames: 3, end: wire.ErrShort},
		{name: "truncated-header", data: send[:7], end: wire.ErrShort},
		{name: "truncated-body", data: send[:len(send)-1], end: wire.ErrShort},
		{name: "oversized-length", data: append(lengthOnly(wire.FrameSizeMax), send[4:]...), end: wire.ErrOversized},
		{name: "length-below-header", data: lengthOnly(3), end: wire.ErrGarbage},
		{name: "bad-version", data: badVersion, end: wire.ErrVersion},
		{name: "unknown-op", data: append(bytes.Clone(login), unknownOp...), frames: 1, end: wire.ErrUnknownOp},
		{name: "reserved-set", data: reserved, end: wire.ErrGarbage},
		{name: "garbage-body", data: garbageBody, frames: 1},
	}
}

// TestFuzzSeeds checks that each corpus file holds its seed and decodes as
// the seed says; -update rewrites the files.
func TestFuzzSeeds(t *testing.T) {
	for _, s := range seeds(t) {
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(seedDir, s.name)
			if *update {
				if err := os.MkdirAll(seedDir, 0o755); err != nil {
					t.Fatal(err)
				}
				content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data)
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := readCorpusFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./system/wire -run TestFuzzSeeds -update)", err)
			}
			if !bytes.Equal(data, s.data) {
				t.Fatalf("%s: got %x, want %x (stale: rerun with -update)", path, data, s.data)
			}
			got := decodeStream(t, [][]byte{data}, true)
			if len(got.frames) != s.frames || got.end != s.end {
				t.Errorf("got %d frames ending %v, want %d ending %v", len(got.frames), got.end, s.frames, s.end)
			}
		})
	}
}

// readCorpusFile reads a one-value []byte corpus file of `go test -fuzz`.
func readCorpusFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(string(raw))
	head, value, ok := strings.Cut(text, "\n")
	if !ok || head != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		return nil, fmt.Errorf("%s: not a one-value []byte corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(value, "[]byte("), ")"))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []byte(s), nil
}
