package observe

import (
	"encoding/hex"
	"math/rand/v2"
)

// RequestIDHeader is the request and response header that carries a
// call's request ID; on gRPC it is the x-request-id metadata.
const RequestIDHeader = "X-Request-Id"

// RequestIDMetadata is [RequestIDHeader] as HTTP/2 and gRPC metadata
// spell it.
const RequestIDMetadata = "x-request-id"

// MaxRequestIDLen is the longest request ID accepted from a client.
const MaxRequestIDLen = 128

// RequestID returns the request ID of a call whose client sent v ("" when
// it sent none): v itself when [ValidRequestID] accepts it, else a new one
// ([NewRequestID]).
func RequestID(v string) string {
	if ValidRequestID(v) {
		return v
	}
	return NewRequestID()
}

// ValidRequestID reports whether a client's request ID is kept: 1 to 128
// characters of [A-Za-z0-9._:-]. Anything else (spaces, quotes, control
// characters, non-ASCII) could forge log lines or headers and is
// replaced.
func ValidRequestID(v string) bool {
	if len(v) == 0 || len(v) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !idChar[v[i]] {
			return false
		}
	}
	return true
}

var idChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "._:-" {
		t[c] = true
	}
	return t
}()

// NewRequestID returns a new request ID: 16 random bytes in lower-case
// hex (32 characters). The bytes come from the runtime's per-thread
// ChaCha8 generator (math/rand/v2), which takes no lock; the string is
// the only allocation.
func NewRequestID() string {
	var b [16]byte
	putUint64(b[:8], rand.Uint64())
	putUint64(b[8:], rand.Uint64())
	var out [32]byte
	hex.Encode(out[:], b[:])
	return string(out[:])
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}
