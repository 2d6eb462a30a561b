package wire

import (
	"bytes"
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var jsonOptions = protojson.MarshalOptions{UseProtoNames: true}

// MarshalJSON encodes m as the HTTP API's JSON: protojson with the proto
// field names, compacted. protojson deliberately varies its whitespace from
// one binary to another (so nobody depends on its exact bytes); compacting
// makes the bytes a function of the message alone, which keeps simulator
// trace hashes of HTTP traffic the same across builds.
func MarshalJSON(m proto.Message) ([]byte, error) {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(len(b))
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
