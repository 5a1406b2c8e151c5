// Package headlimit checks a request's head against a listener's edge
// limits: the length of the request-target, control characters in it, and
// the number and size of the header fields. The HTTP/1.1 reader, the
// HTTP/2 engine and the HTTP/3 handler of package transports all check
// with it, before any handler, relay or policy sees the request, so that
// the same request gets the same answer whatever its HTTP version.
//
// It owns the accounting and the answers (status and a short reason that
// names the config key); it does not read or write connections.
package headlimit

import (
	"net/http"
	"strconv"
)

// FieldOverhead is what each header field adds to the size of a header
// beside the bytes of its name and value: 32, as HTTP/2 (RFC 9113 §6.5.2)
// and HTTP/3 (RFC 9114 §4.2.2) count a field list.
const FieldOverhead = 32

// Limits bound a request head. A zero field is no limit.
type Limits struct {
	// MaxURIBytes bounds the request-target (HTTP/1.1) or :path (HTTP/2,
	// HTTP/3), in bytes: 414 past it.
	MaxURIBytes int
	// MaxHeaderBytes bounds the header fields: the sum over all of them of
	// name and value lengths plus FieldOverhead; 431 past it.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header fields; 431 past it.
	MaxHeaderCount int
}

// Error is a request head refused at the edge: the HTTP status to answer
// with and a short reason for the client.
type Error struct {
	Status int
	Msg    string
}

// Error returns the reason.
func (e *Error) Error() string { return e.Msg }

// Body returns the plain-text response body: the reason and a line end.
func (e *Error) Body() string { return e.Msg + "\n" }

// FieldSize returns what one header field counts against MaxHeaderBytes.
func FieldSize(name, value string) int { return len(name) + len(value) + FieldOverhead }

// Target checks a request-target (or :path): its length, control
// characters (bytes 0x00-0x1F and 0x7F) anywhere in it, and control
// characters percent-encoded in its path (%00-%1F, %7F), which would reach
// a backend as bytes of a field value. Encoded ones in the query are left
// alone: form-encoded text may hold line ends.
//
// It does not allocate unless it refuses the target.
func (l Limits) Target(target string) *Error { return checkTarget(l, target) }

// TargetBytes is [Limits.Target] for a target held in a byte slice.
func (l Limits) TargetBytes(target []byte) *Error { return checkTarget(l, target) }

func checkTarget[T string | []byte](l Limits, target T) *Error {
	if l.MaxURIBytes > 0 && len(target) > l.MaxURIBytes {
		return &Error{http.StatusRequestURITooLong,
			"request target exceeds " + strconv.Itoa(l.MaxURIBytes) + " bytes (max_uri_bytes)"}
	}
	inPath := true
	for i := 0; i < len(target); i++ {
		c := targetClass[target[i]]
		if c == 0 {
			continue
		}
		switch {
		case c == classControl:
			return &Error{http.StatusBadRequest, "request target contains a control character"}
		case c == classQuery:
			inPath = false
		case inPath && i+2 < len(target) && encodedControl(target[i+1], target[i+2]):
			return &Error{http.StatusBadRequest, "request path contains an encoded control character (%00-%1F or %7F)"}
		}
	}
	return nil
}

// Byte classes of a request-target that Target looks at; 0 for the rest.
const (
	classControl = 1 + iota
	classQuery
	classPercent
)

var targetClass = func() (t [256]uint8) {
	for b := range 0x20 {
		t[b] = classControl
	}
	t[0x7f] = classControl
	t['?'] = classQuery
	t['%'] = classPercent
	return t
}()

// encodedControl reports whether the two hex digits after a '%' encode a
// control character: 00-1F or 7F.
func encodedControl(hi, lo byte) bool {
	switch hi {
	case '0', '1':
		return isHex(lo)
	case '7':
		return lo == 'f' || lo == 'F'
	}
	return false
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// Fields checks the header fields of a request: count of them, and size
// summed with [FieldSize]. It does not allocate unless it refuses them.
func (l Limits) Fields(count, size int) *Error {
	if l.MaxHeaderCount > 0 && count > l.MaxHeaderCount {
		return l.TooManyFields()
	}
	if l.MaxHeaderBytes > 0 && size > l.MaxHeaderBytes {
		return l.FieldsTooLarge()
	}
	return nil
}

// TooManyFields is the answer to a request with more than MaxHeaderCount
// header fields.
func (l Limits) TooManyFields() *Error {
	return &Error{http.StatusRequestHeaderFieldsTooLarge,
		"request header fields exceed " + strconv.Itoa(l.MaxHeaderCount) + " (max_header_count)"}
}

// FieldsTooLarge is the answer to a request whose header fields are larger
// than MaxHeaderBytes.
func (l Limits) FieldsTooLarge() *Error {
	return &Error{http.StatusRequestHeaderFieldsTooLarge,
		"request header fields exceed " + strconv.Itoa(l.MaxHeaderBytes) + " bytes (max_header_bytes)"}
}
