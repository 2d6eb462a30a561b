package wire

import "testing"

// The HTTP JSON is a function of the message alone: protojson's per-binary
// whitespace is compacted away, so simulator traces of HTTP traffic hash the
// same in every build.
func TestMarshalJSONIsCanonical(t *testing.T) {
	got, err := MarshalJSON(&SendAck{ConvId: "p:a:b:l", ClientMsgId: "a-d-1", Cseq: 1, Seq: 42})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"conv_id":"p:a:b:l","client_msg_id":"a-d-1","cseq":"1","seq":"42"}`
	if string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
