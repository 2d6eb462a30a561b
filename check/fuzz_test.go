package check

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzReadHistory: arbitrary input never panics the reader, and whatever
// it accepts round-trips and can be checked without panicking.
func FuzzReadHistory(f *testing.F) {
	f.Add([]byte(`{"client":1,"session":1,"user":"a","op":"send","conv":"p:a:b:l1","call":10,"return":20,"in":{"client_msg_id":"a-1","cseq":1},"out":{"seq":1}}`))
	f.Add([]byte(`{"client":2,"user":"b","op":"sync","conv":"p:a:b:l1","call":30,"return":40,"in":{"after_seq":0,"limit":10},"out":{"msgs":[{"seq":1,"sender":"a","client_msg_id":"a-1"}],"last_seq":1}}` + "\n" +
		`{"client":2,"user":"b","op":"final","conv":"p:a:b:l1","call":50,"return":50,"out":{"msgs":[{"seq":1,"sender":"a","client_msg_id":"a-1"}],"unread":1}}`))
	f.Add([]byte(`{"op":"send","conv":"x","call":5,"return":null,"unknown":true}`))
	f.Add([]byte("{\"op\":\"login\",\"call\":1,\"return\":0}\n\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHistory(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteHistory(&buf, h.Ops); err != nil {
			t.Fatalf("write: %v", err)
		}
		again, err := ReadHistory(&buf)
		if err != nil {
			t.Fatalf("got %v reading back what was written, want nil", err)
		}
		if len(again.Ops) != len(h.Ops) {
			t.Fatalf("got %d ops back, want %d", len(again.Ops), len(h.Ops))
		}
		Structural(h, nil, StructuralOptions{LivenessBound: time.Second})
		if len(h.Ops) <= 12 {
			if _, err := Check(h, Options{Timeout: 200 * time.Millisecond}); err != nil {
				t.Fatalf("check: %v", err)
			}
		}
	})
}

func TestStoreDumpRoundTrip(t *testing.T) {
	_, dump := Generate(GenConfig{Seed: 2, Conversations: 3, Ops: 100})
	var buf bytes.Buffer
	if err := WriteStoreDump(&buf, dump); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"client_msg_id"`) || !strings.Contains(buf.String(), `"conv_id"`) {
		t.Fatalf("got %q, want snake_case field names", buf.String()[:80])
	}
	got, err := ReadStoreDump(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(dump) || len(got) == 0 || got[len(got)-1] != dump[len(dump)-1] {
		t.Fatalf("got %d rows back, want %d equal rows", len(got), len(dump))
	}
	empty, err := ReadStoreDump(strings.NewReader(""))
	if err != nil || empty == nil {
		t.Fatalf("got %v, %v for an empty dump, want an empty non-nil dump", empty, err)
	}
	if _, err := ReadStoreDump(strings.NewReader(`{"seq":1}`)); err == nil {
		t.Fatal("got no error for a row without conv_id, want one")
	}
}
