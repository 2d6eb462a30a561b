package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/zzim/zzim/system/wire"
)

func TestParseConvID(t *testing.T) {
	long := strings.Repeat("u", wire.UserIDSizeMax)
	longListing := strings.Repeat("l", wire.ListingIDSizeMax)
	tests := []struct {
		id   string
		want wire.Conv
	}{
		{wire.BroadcastConvID, wire.Conv{Kind: wire.ConvBroadcast}},
		{"s:alice", wire.Conv{Kind: wire.ConvSystem, User: "alice"}},
		{wire.SystemConvID("Bob_9-x"), wire.Conv{Kind: wire.ConvSystem, User: "Bob_9-x"}},
		{"p:alice:bob:lst1", wire.Conv{Kind: wire.ConvPair, Buyer: "alice", Seller: "bob", Listing: "lst1"}},
		{wire.PairConvID("Alice", "alice", "L"), wire.Conv{Kind: wire.ConvPair, Buyer: "Alice", Seller: "alice", Listing: "L"}},
		{wire.PairConvID(long, "v", longListing), wire.Conv{Kind: wire.ConvPair, Buyer: long, Seller: "v", Listing: longListing}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := wire.ParseConvID(tt.id)
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v, want %+v, nil", got, err, tt.want)
			}
		})
	}
}

func TestParseConvIDBad(t *testing.T) {
	bad := []string{
		"", "b:", "b:ALL", "b:all ", "x:alice", "alice",
		"s:", "s:al ice", "s:" + strings.Repeat("u", wire.UserIDSizeMax+1), "s:a:b",
		"p:", "p:a:b", "p:a:b:c:d", "p:a:a:l", "p::b:l", "p:a::l", "p:a:b:",
		"p:a:b:l\n", "p:a;b:c:l", "p:a:b:" + strings.Repeat("l", wire.ListingIDSizeMax+1),
		"p:'; DROP TABLE messages; --:b:l",
	}
	for _, id := range bad {
		t.Run(id, func(t *testing.T) {
			if got, err := wire.ParseConvID(id); !errors.Is(err, wire.ErrBadID) {
				t.Errorf("got %+v, %v, want ErrBadID", got, err)
			}
		})
	}
}

func TestConvIDSizeMax(t *testing.T) {
	u := strings.Repeat("u", wire.UserIDSizeMax)
	v := strings.Repeat("v", wire.UserIDSizeMax)
	l := strings.Repeat("l", wire.ListingIDSizeMax)
	if got := len(wire.PairConvID(u, v, l)); got > wire.ConvIDSizeMax {
		t.Errorf("longest pair id: got %d bytes, want at most %d", got, wire.ConvIDSizeMax)
	}
}

func TestParticipant(t *testing.T) {
	pair, _ := wire.ParseConvID("p:alice:bob:lst1")
	system, _ := wire.ParseConvID("s:alice")
	broadcast, _ := wire.ParseConvID(wire.BroadcastConvID)
	tests := []struct {
		name     string
		conv     wire.Conv
		user     string
		wantPeer string
		wantOK   bool
	}{
		{"buyer", pair, "alice", "bob", true},
		{"seller", pair, "bob", "alice", true},
		{"stranger in pair", pair, "carol", "", false},
		{"case differs", pair, "Alice", "", false},
		{"system owner", system, "alice", "", true},
		{"system stranger", system, "bob", "", false},
		{"broadcast anyone", broadcast, "carol", "", true},
		{"zero conv", wire.Conv{}, "alice", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer, ok := tt.conv.Participant(tt.user)
			if peer != tt.wantPeer || ok != tt.wantOK {
				t.Errorf("got %q, %v, want %q, %v", peer, ok, tt.wantPeer, tt.wantOK)
			}
		})
	}
}

func TestValidIDs(t *testing.T) {
	tests := []struct {
		id   string
		good bool
	}{
		{"a", true},
		{"Az09_-", true},
		{strings.Repeat("x", wire.UserIDSizeMax), true},
		{"", false},
		{strings.Repeat("x", wire.UserIDSizeMax+1), false},
		{"a b", false},
		{"a:b", false},
		{"a.b", false},
		{"~system", false},
		{"é", false},
		{"a\x00", false},
	}
	checks := map[string]func(string) error{
		"user": wire.ValidUserID, "listing": wire.ValidListingID, "client_msg_id": wire.ValidClientMsgID,
	}
	for what, valid := range checks {
		for _, tt := range tests {
			err := valid(tt.id)
			if tt.good && err != nil {
				t.Errorf("%s %q: got error %v, want nil", what, tt.id, err)
			}
			if !tt.good && !errors.Is(err, wire.ErrBadID) {
				t.Errorf("%s %q: got error %v, want ErrBadID", what, tt.id, err)
			}
		}
	}
}

func TestValidBody(t *testing.T) {
	tests := []struct {
		name string
		body string
		good bool
	}{
		{"empty", "", true},
		{"unicode", "안녕 🙂", true},
		{"max", strings.Repeat("x", wire.MessageBodySizeMax), true},
		{"over max", strings.Repeat("x", wire.MessageBodySizeMax+1), false},
		{"not utf-8", "a\xffb", false},
		{"cut rune", "🙂"[:2], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := wire.ValidBody(tt.body); (err == nil) != tt.good {
				t.Errorf("got error %v, want valid=%v", err, tt.good)
			}
		})
	}
}
