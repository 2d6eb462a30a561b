package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/zzim/zzim/system/wire"
)

// knownOps lists every op this build understands, found by asking Known of
// every byte, so an op added later is covered without editing this test.
func knownOps() []wire.Op {
	var ops []wire.Op
	for i := range 256 {
		if op := wire.Op(i); op.Known() {
			ops = append(ops, op)
		}
	}
	return ops
}

// fillDepthMax bounds how deep fill goes into nested messages.
const fillDepthMax = 3

// fill sets every field of m to a non-default value (the first field of a
// oneof only), so a round trip exercises every field's encoding.
func fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if oneof := fd.ContainingOneof(); oneof != nil && !oneof.IsSynthetic() && m.WhichOneof(oneof) != nil {
			continue
		}
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range 2 {
				if fd.Message() != nil {
					if depth >= fillDepthMax {
						break
					}
					e := list.NewElement()
					fill(e.Message(), depth+1)
					list.Append(e)
					continue
				}
				list.Append(scalar(fd, i))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			key := scalar(fd.MapKey(), i).MapKey()
			if fd.MapValue().Message() != nil {
				v := mp.NewValue()
				fill(v.Message(), depth+1)
				mp.Set(key, v)
			} else {
				mp.Set(key, scalar(fd.MapValue(), i))
			}
		case fd.Message() != nil:
			if depth < fillDepthMax {
				fill(m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, scalar(fd, i))
		}
	}
}

// scalar is a non-default value of fd's kind, varied by i.
func scalar(fd protoreflect.FieldDescriptor, i int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(values.Len() - 1).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(-7 - i))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(-1) << 40 * int64(i+1))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(1<<31 + uint32(i))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(1<<63 + uint64(i))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(-2.25)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fmt.Sprintf("%s-%d 'quoted' 안녕 🙂", fd.Name(), i))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{0, 1, 0xfe, 0xff, byte(i)})
	}
	panic(fmt.Sprintf("fill: no value for kind %v of %s", fd.Kind(), fd.FullName()))
}

func TestFrameRoundTripEveryOp(t *testing.T) {
	ops := knownOps()
	if len(ops) < 25 {
		t.Fatalf("got %d known ops, want at least the 25 the protocol names", len(ops))
	}
	for _, op := range ops {
		t.Run(op.String(), func(t *testing.T) {
			if strings.HasPrefix(op.String(), "OP(") {
				t.Errorf("op %d: got no name, want one", op)
			}
			m, err := wire.NewBody(op)
			if err != nil {
				t.Fatalf("NewBody: got error %v, want nil", err)
			}
			fill(m.ProtoReflect(), 0)
			if got, err := wire.OpOf(m); err != nil || got != op {
				t.Fatalf("OpOf(NewBody(%s)): got %v, %v, want %s", op, got, err, op)
			}
			f, err := wire.EncodeMessage(0xdeadbeef, m)
			if err != nil {
				t.Fatalf("EncodeMessage: got error %v, want nil", err)
			}
			f.Flags = 0x81
			prefix := []byte("already here")
			buf, err := wire.AppendFrame(bytes.Clone(prefix), f)
			if err != nil {
				t.Fatalf("AppendFrame: got error %v, want nil", err)
			}
			if !bytes.Equal(buf[:len(prefix)], prefix) {
				t.Fatalf("AppendFrame changed what dst held: got %q, want %q", buf[:len(prefix)], prefix)
			}
			got, n, err := wire.Decode(buf[len(prefix):])
			if err != nil || n != len(buf)-len(prefix) || n != f.Size() {
				t.Fatalf("Decode: got n=%d err=%v, want n=%d err=nil", n, err, f.Size())
			}
			if got.Op != op || got.Flags != 0x81 || got.ReqID != 0xdeadbeef || !bytes.Equal(got.Body, f.Body) {
				t.Fatalf("Decode: got %+v, want %+v", got, f)
			}
			body, err := wire.DecodeBody(got)
			if err != nil {
				t.Fatalf("DecodeBody: got error %v, want nil", err)
			}
			if !proto.Equal(body, m) {
				t.Errorf("body: got %v, want %v", body, m)
			}
		})
	}
}

func TestUnknownOps(t *testing.T) {
	for i := range 256 {
		op := wire.Op(i)
		if op.Known() {
			continue
		}
		if _, err := wire.NewBody(op); !errors.Is(err, wire.ErrUnknownOp) {
			t.Errorf("NewBody(%d): got error %v, want ErrUnknownOp", i, err)
		}
		if _, err := wire.AppendFrame(nil, wire.Frame{Op: op}); !errors.Is(err, wire.ErrUnknownOp) {
			t.Errorf("AppendFrame op %d: got error %v, want ErrUnknownOp", i, err)
		}
		if _, err := wire.DecodeBody(wire.Frame{Op: op}); !errors.Is(err, wire.ErrUnknownOp) {
			t.Errorf("DecodeBody op %d: got error %v, want ErrUnknownOp", i, err)
		}
	}
}

// header builds a frame header announcing bodyLen body bytes.
func header(bodyLen int, ver, op, reserved byte) []byte {
	h := make([]byte, wire.HeaderSize)
	binary.BigEndian.PutUint32(h[0:4], uint32(wire.HeaderSize-4+bodyLen))
	h[4], h[5], h[6], h[7] = ver, op, 0, reserved
	binary.BigEndian.PutUint32(h[8:12], 42)
	return h
}

func lengthOnly(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestDecodeErrors(t *testing.T) {
	send := byte(wire.OpSend)
	valid := append(header(3, wire.Version, send, 0), 1, 2, 3)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, wire.ErrShort},
		{"three bytes", []byte{0, 0, 0}, wire.ErrShort},
		{"length only", valid[:4], wire.ErrShort},
		{"header part", valid[:8], wire.ErrShort},
		{"header only", valid[:wire.HeaderSize], wire.ErrShort},
		{"body part", valid[:len(valid)-1], wire.ErrShort},
		{"oversized by one", lengthOnly(wire.FrameSizeMax - 4 + 1), wire.ErrOversized},
		{"oversized max u32", lengthOnly(0xffffffff), wire.ErrOversized},
		{"length zero", lengthOnly(0), wire.ErrGarbage},
		{"length below header", lengthOnly(wire.HeaderSize - 4 - 1), wire.ErrGarbage},
		{"version 0", header(0, 0, send, 0), wire.ErrVersion},
		{"version 2 seen early", header(0, 2, send, 0)[:5], wire.ErrVersion},
		{"op 0", header(0, wire.Version, 0, 0), wire.ErrUnknownOp},
		{"op 200 seen early", header(0, wire.Version, 200, 0)[:6], wire.ErrUnknownOp},
		{"op between app and internal", header(0, wire.Version, byte(wire.OpInternalBase)-1, 0), wire.ErrUnknownOp},
		{"reserved byte set", header(0, wire.Version, send, 1), wire.ErrGarbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := wire.Decode(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if n != 0 || f.Body != nil {
				t.Errorf("got n=%d body=%v, want 0 and nil", n, f.Body)
			}
		})
	}
}

func TestSizeLimits(t *testing.T) {
	max := wire.Frame{Op: wire.OpSend, Body: make([]byte, wire.BodySizeMax)}
	buf, err := wire.AppendFrame(nil, max)
	if err != nil {
		t.Fatalf("frame of FrameSizeMax: got error %v, want nil", err)
	}
	if _, n, err := wire.Decode(buf); err != nil || n != wire.FrameSizeMax {
		t.Errorf("decode frame of FrameSizeMax: got n=%d err=%v, want n=%d", n, err, wire.FrameSizeMax)
	}
	over := wire.Frame{Op: wire.OpSend, Body: make([]byte, wire.BodySizeMax+1)}
	if _, err := wire.AppendFrame(nil, over); !errors.Is(err, wire.ErrOversized) {
		t.Errorf("frame over FrameSizeMax: got error %v, want ErrOversized", err)
	}
	big := &wire.Send{Body: strings.Repeat("x", wire.BodySizeMax)}
	if _, err := wire.EncodeMessage(1, big); !errors.Is(err, wire.ErrOversized) {
		t.Errorf("message over BodySizeMax: got error %v, want ErrOversized", err)
	}
}

func TestDecodeBodyGarbage(t *testing.T) {
	f := wire.Frame{Op: wire.OpSend, Body: []byte{0xff, 0xff, 0xff}}
	if _, err := wire.DecodeBody(f); !errors.Is(err, wire.ErrGarbage) {
		t.Errorf("got error %v, want ErrGarbage", err)
	}
}

func TestDecodeStream(t *testing.T) {
	msgs := []proto.Message{
		&wire.Login{Token: "t", DeviceId: "d"},
		&wire.Heartbeat{},
		&wire.Send{ConvId: "p:a:b:l", ClientMsgId: "a-1", Cseq: 1, Body: "hi"},
	}
	var stream []byte
	for i, m := range msgs {
		f, err := wire.EncodeMessage(uint32(i+1), m)
		if err != nil {
			t.Fatalf("encode %d: got error %v, want nil", i, err)
		}
		if stream, err = wire.AppendFrame(stream, f); err != nil {
			t.Fatalf("append %d: got error %v, want nil", i, err)
		}
	}
	rest := stream
	for i, want := range msgs {
		f, n, err := wire.Decode(rest)
		if err != nil {
			t.Fatalf("frame %d: got error %v, want nil", i, err)
		}
		if f.ReqID != uint32(i+1) {
			t.Errorf("frame %d: got reqID %d, want %d", i, f.ReqID, i+1)
		}
		got, err := wire.DecodeBody(f)
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("frame %d: got %v, %v, want %v", i, got, err, want)
		}
		rest = rest[n:]
	}
	if _, _, err := wire.Decode(rest); !errors.Is(err, wire.ErrShort) || len(rest) != 0 {
		t.Errorf("after the stream: got %d bytes left and %v, want 0 and ErrShort", len(rest), err)
	}
}
