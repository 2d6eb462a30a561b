package wire_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

var (
	secret = []byte("test secret, not for production")
	now    = time.Unix(1_700_000_000, 0)
)

func TestTokenRoundTrip(t *testing.T) {
	users := []string{"alice", "a", strings.Repeat("Z9_-", wire.UserIDSizeMax/4)}
	for _, user := range users {
		token := wire.SignToken(secret, user, now.Add(time.Hour))
		if len(token) > wire.TokenSizeMax {
			t.Errorf("token for %d-byte user: got %d bytes, want at most %d", len(user), len(token), wire.TokenSizeMax)
		}
		got, err := wire.VerifyToken(secret, token, now)
		if err != nil || got != user {
			t.Errorf("verify token of %q: got %q, %v, want %q, nil", user, got, err, user)
		}
	}
}

func TestTokenRejected(t *testing.T) {
	valid := wire.SignToken(secret, "alice", now.Add(time.Hour))
	payload, sig, _ := cutLast(valid, ".")
	_, exp, _ := cutLast(payload, ".")
	flipped := []byte(sig)
	flipped[0] ^= 1
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  error
	}{
		{"missing", "", now, wire.ErrTokenMissing},
		{"other secret", wire.SignToken([]byte("other secret"), "alice", now.Add(time.Hour)), now, wire.ErrTokenForged},
		{"signature bit flipped", payload + "." + string(flipped), now, wire.ErrTokenForged},
		{"signature dropped", payload + ".", now, wire.ErrTokenForged},
		{"user swapped", "mallory." + exp + "." + sig, now, wire.ErrTokenForged},
		{"expiry extended", "alice." + strconv.FormatInt(now.Add(100*time.Hour).Unix(), 10) + "." + sig, now, wire.ErrTokenForged},
		{"forged and expired", "alice.1." + sig, now, wire.ErrTokenForged},
		{"expired", valid, now.Add(2 * time.Hour), wire.ErrTokenExpired},
		{"expired at the second", valid, now.Add(time.Hour), wire.ErrTokenExpired},
		{"no dots", "aliceexpirysig", now, wire.ErrTokenFormat},
		{"one dot", "alice.sig", now, wire.ErrTokenFormat},
		{"empty user", "." + exp + "." + sig, now, wire.ErrTokenFormat},
		{"bad user id", "al ice." + exp + "." + sig, now, wire.ErrTokenFormat},
		{"expiry not a number", "alice.soon." + sig, now, wire.ErrTokenFormat},
		{"empty expiry", "alice.." + sig, now, wire.ErrTokenFormat},
		{"oversized", strings.Repeat("a", wire.TokenSizeMax+1), now, wire.ErrTokenFormat},
		{"oversized but signed", wire.SignToken(secret, strings.Repeat("a", wire.TokenSizeMax), now.Add(time.Hour)), now, wire.ErrTokenFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := wire.VerifyToken(secret, tt.token, tt.at)
			if !errors.Is(err, tt.want) || user != "" {
				t.Errorf("got %q, %v, want \"\", %v", user, err, tt.want)
			}
		})
	}
	if user, err := wire.VerifyToken(secret, valid, now.Add(time.Hour-time.Second)); err != nil || user != "alice" {
		t.Errorf("a second before expiry: got %q, %v, want alice, nil", user, err)
	}
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
