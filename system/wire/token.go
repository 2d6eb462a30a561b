package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Token errors. Each closes only the connection that presented the token.
var (
	ErrTokenMissing = errors.New("token: missing")
	ErrTokenForged  = errors.New("token: bad signature")
	ErrTokenExpired = errors.New("token: expired")
	ErrTokenFormat  = errors.New("token: malformed")
)

// TokenSizeMax bounds a token so a hostile one costs nothing to reject.
const TokenSizeMax = 512

// SignToken returns "userID.expiryUnix.signature" where the signature is
// HMAC-SHA256(secret, userID + "." + expiryUnix), base64url without padding.
func SignToken(secret []byte, userID string, expiry time.Time) string {
	payload := userID + "." + strconv.FormatInt(expiry.Unix(), 10)
	return payload + "." + tokenMAC(secret, payload)
}

func tokenMAC(secret []byte, payload string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// VerifyToken checks signature and expiry against now and returns the user.
func VerifyToken(secret []byte, token string, now time.Time) (string, error) {
	if token == "" {
		return "", ErrTokenMissing
	}
	if len(token) > TokenSizeMax {
		return "", fmt.Errorf("%w: %d bytes", ErrTokenFormat, len(token))
	}
	last := strings.LastIndexByte(token, '.')
	if last < 0 {
		return "", ErrTokenFormat
	}
	payload, sig := token[:last], token[last+1:]
	dot := strings.LastIndexByte(payload, '.')
	if dot <= 0 {
		return "", ErrTokenFormat
	}
	userID, expText := payload[:dot], payload[dot+1:]
	if err := ValidUserID(userID); err != nil {
		return "", fmt.Errorf("%w: %v", ErrTokenFormat, err)
	}
	exp, err := strconv.ParseInt(expText, 10, 64)
	if err != nil {
		return "", ErrTokenFormat
	}
	if !hmac.Equal([]byte(sig), []byte(tokenMAC(secret, payload))) {
		return "", ErrTokenForged
	}
	if !now.Before(time.Unix(exp, 0)) {
		return "", ErrTokenExpired
	}
	return userID, nil
}
