package wire

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Identifier limits.
const (
	UserIDSizeMax      = 64
	ListingIDSizeMax   = 64
	ClientMsgIDSizeMax = 64
	ConvIDSizeMax      = 3 + UserIDSizeMax*2 + ListingIDSizeMax + 3
	// MessageBodySizeMax bounds a chat message's text (bytes of UTF-8).
	MessageBodySizeMax = 8 << 10
)

// Conversation id forms.
const (
	// BroadcastConvID is the one conversation every user reads with their own read_seq.
	BroadcastConvID = "b:all"
	pairPrefix      = "p:"
	systemPrefix    = "s:"
)

// ConvKind tells the three kinds of conversation apart.
type ConvKind int

const (
	ConvPair      ConvKind = iota + 1 // buyer, seller, listing
	ConvSystem                        // one user's system notices
	ConvBroadcast                     // platform broadcasts
)

// ErrBadID is wrapped by every id validation error.
var ErrBadID = errors.New("bad id")

// ValidUserID: 1..UserIDSizeMax bytes of [A-Za-z0-9_-].
func ValidUserID(id string) error { return validToken("user id", id, UserIDSizeMax) }

// ValidListingID: as a user id.
func ValidListingID(id string) error { return validToken("listing id", id, ListingIDSizeMax) }

// ValidClientMsgID: as a user id.
func ValidClientMsgID(id string) error { return validToken("client_msg_id", id, ClientMsgIDSizeMax) }

func validToken(what, id string, max int) error {
	if id == "" || len(id) > max {
		return fmt.Errorf("%w: %s length %d not in 1..%d", ErrBadID, what, len(id), max)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s has byte %q at %d", ErrBadID, what, c, i)
		}
	}
	return nil
}

// ValidBody checks a message body: valid UTF-8 and within MessageBodySizeMax.
func ValidBody(body string) error {
	if len(body) > MessageBodySizeMax {
		return fmt.Errorf("body of %d bytes exceeds %d", len(body), MessageBodySizeMax)
	}
	if !utf8.ValidString(body) {
		return errors.New("body is not valid UTF-8")
	}
	return nil
}

// PairConvID names the conversation of buyer and seller about listing.
func PairConvID(buyer, seller, listing string) string {
	return pairPrefix + buyer + ":" + seller + ":" + listing
}

// SystemConvID names user's system-notice conversation.
func SystemConvID(user string) string { return systemPrefix + user }

// Conv is a parsed conversation id.
type Conv struct {
	Kind    ConvKind
	Buyer   string // ConvPair
	Seller  string // ConvPair
	Listing string // ConvPair
	User    string // ConvSystem
}

// ParseConvID parses and validates a conversation id.
func ParseConvID(id string) (Conv, error) {
	switch {
	case id == BroadcastConvID:
		return Conv{Kind: ConvBroadcast}, nil
	case strings.HasPrefix(id, systemPrefix):
		u := id[len(systemPrefix):]
		if err := ValidUserID(u); err != nil {
			return Conv{}, err
		}
		return Conv{Kind: ConvSystem, User: u}, nil
	case strings.HasPrefix(id, pairPrefix):
		// Exactly three fields separated by ':'; cutting twice needs no slice
		// (this runs on every message's conversation id).
		buyer, rest, ok1 := strings.Cut(id[len(pairPrefix):], ":")
		seller, listing, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || strings.Contains(listing, ":") {
			return Conv{}, fmt.Errorf("%w: conversation %q", ErrBadID, id)
		}
		if err := ValidUserID(buyer); err != nil {
			return Conv{}, err
		}
		if err := ValidUserID(seller); err != nil {
			return Conv{}, err
		}
		if buyer == seller {
			return Conv{}, fmt.Errorf("%w: buyer and seller are both %q", ErrBadID, buyer)
		}
		if err := ValidListingID(listing); err != nil {
			return Conv{}, err
		}
		return Conv{Kind: ConvPair, Buyer: buyer, Seller: seller, Listing: listing}, nil
	}
	return Conv{}, fmt.Errorf("%w: conversation %q", ErrBadID, id)
}

// Participant reports whether user may read conv, and who the peer is.
func (c Conv) Participant(user string) (peer string, ok bool) {
	switch c.Kind {
	case ConvPair:
		if user == c.Buyer {
			return c.Seller, true
		}
		if user == c.Seller {
			return c.Buyer, true
		}
	case ConvSystem:
		return "", user == c.User
	case ConvBroadcast:
		return "", true
	}
	return "", false
}
