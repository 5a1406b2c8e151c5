package transports

import (
	"bytes"
	"net/http"

	"github.com/rosetta-gateway/rosetta/transports/headlimit"
)

// HTTP/1.1 request heads and chunked bodies, as http1Conn scans them
// (RFC 9112). The scanners decide two things: whether a head may go on to
// net/http (limits, request smuggling), and where each message ends, so
// that the next head is scanned too. For the second they must never
// accept framing that net/http's reader rejects, or the two would
// disagree about where the next request starts: so they are at least as
// strict as net/http (Go 1.26) on every point that moves a message
// boundary, and stricter where that is simpler.

const (
	// requestLineSlack is what a request line may hold beside its
	// target: the method, two spaces and the version.
	requestLineSlack = 64
	// maxLeadingCRLF is how many CR or LF bytes may precede a request
	// line (RFC 9112 §2.2 tolerates a few after a body; net/http skips up
	// to four).
	maxLeadingCRLF = 4
	// maxChunkLine bounds a chunk-size line without its CRLF: net/http
	// reads it in its 4 KiB buffer.
	maxChunkLine = 4094
	// maxTrailerSection bounds a chunked body's trailer section: net/http
	// looks for its end within its 4 KiB buffer.
	maxTrailerSection = 4096
)

// The refusals of malformed heads. Each ends the connection.
var (
	errMalformedRequestLine = &headlimit.Error{Status: http.StatusBadRequest, Msg: "malformed request line"}
	errHTTPVersion          = &headlimit.Error{Status: http.StatusHTTPVersionNotSupported, Msg: "unsupported HTTP version"}
	errPreface              = &headlimit.Error{Status: http.StatusBadRequest, Msg: "incomplete HTTP/2 connection preface"}
	errFolding              = &headlimit.Error{Status: http.StatusBadRequest, Msg: "obsolete line folding in a header field"}
	errFieldLine            = &headlimit.Error{Status: http.StatusBadRequest, Msg: "malformed header field line"}
	errFieldValue           = &headlimit.Error{Status: http.StatusBadRequest, Msg: "invalid character in a header field value"}
	errContentLength        = &headlimit.Error{Status: http.StatusBadRequest, Msg: "invalid Content-Length"}
	errSmuggling            = &headlimit.Error{Status: http.StatusBadRequest, Msg: "request has both Content-Length and Transfer-Encoding"}
	errTE10                 = &headlimit.Error{Status: http.StatusBadRequest, Msg: "Transfer-Encoding in an HTTP/1.0 request"}
	errTE                   = &headlimit.Error{Status: http.StatusNotImplemented, Msg: "unsupported transfer coding (only chunked is)"}
)

// headScan is the progress of scanning one request head. Offsets count
// from the head's first byte.
type headScan struct {
	off       int // bytes scanned
	lineStart int
	lead      int  // leading CR and LF bytes skipped
	started   bool // past the leading CR and LF bytes
	gotLine   bool // request line parsed
	done      bool // the blank line is in

	fields int // header field lines
	raw    int // bytes of header field lines, line ends included
	size   int // fields counted as headlimit.FieldSize does

	http10, connect, pri, upgrade bool
	te                            int // Transfer-Encoding lines
	chunked                       bool
	cl                            int64 // Content-Length; -1 when absent
}

func (h *headScan) reset() { *h = headScan{cl: -1} }

// scan goes on scanning the head at the start of b from where it
// stopped. It returns done once the blank line that ends the head is in
// (h.off is then the head's length), or the refusal of the head.
func (h *headScan) scan(b []byte, lim headlimit.Limits) (done bool, e *headlimit.Error) {
	if h.done {
		return true, nil
	}
	if !h.started {
		for h.off < len(b) && h.lead < maxLeadingCRLF && (b[h.off] == '\r' || b[h.off] == '\n') {
			h.off++
			h.lead++
		}
		if h.off == len(b) && h.lead < maxLeadingCRLF {
			return false, nil
		}
		h.started, h.lineStart = true, h.off
	}
	for {
		i := bytes.IndexByte(b[h.off:], '\n')
		if i < 0 {
			h.off = len(b)
			return false, h.partial(b[h.lineStart:], lim)
		}
		next := h.off + i + 1
		line := b[h.lineStart : next-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		switch {
		case !h.gotLine:
			if e := h.partial(line, lim); e != nil {
				return false, e
			}
			if e := h.requestLine(line, lim); e != nil {
				return false, e
			}
			h.gotLine = true
		case len(line) == 0:
			h.off, h.done = next, true
			return true, h.framing()
		default:
			if e := h.field(line, next-h.lineStart, lim); e != nil {
				return false, e
			}
		}
		h.off, h.lineStart = next, next
	}
}

// partial checks the line being received (or just received) against the
// limits, so that an over-long line is refused without waiting for its
// end.
func (h *headScan) partial(line []byte, lim headlimit.Limits) *headlimit.Error {
	if !h.gotLine {
		if len(line) <= lim.MaxURIBytes+requestLineSlack {
			return nil
		}
		// The target is what follows the method: too long, unless the
		// "method" is what is too long.
		if sp := bytes.IndexByte(line, ' '); sp > 0 && sp < requestLineSlack {
			if e := lim.TargetBytes(line[sp+1:]); e != nil {
				return e
			}
		}
		return errMalformedRequestLine
	}
	if h.raw+len(line) > lim.MaxHeaderBytes {
		return lim.FieldsTooLarge()
	}
	return nil
}

// requestLine parses "method SP request-target SP HTTP-version" as
// net/http does and checks the target.
func (h *headScan) requestLine(line []byte, lim headlimit.Limits) *headlimit.Error {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errMalformedRequestLine
	}
	method, rest := line[:sp1], line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || !isToken(method) {
		return errMalformedRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	if e := lim.TargetBytes(target); e != nil {
		return e
	}
	// HTTP-version as net/http reads it: "HTTP/" DIGIT "." DIGIT.
	if len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		!isDigit(version[5]) || !isDigit(version[7]) {
		return errMalformedRequestLine
	}
	switch {
	case version[5] == '1':
		h.http10 = version[7] == '0'
	case string(method) == "PRI" && string(target) == "*" && string(version) == "HTTP/2.0":
		h.pri = true
	default:
		return errHTTPVersion
	}
	h.connect = string(method) == http.MethodConnect
	return nil
}

// field checks one header field line and notes what frames the body.
func (h *headScan) field(line []byte, rawLen int, lim headlimit.Limits) *headlimit.Error {
	if line[0] == ' ' || line[0] == '\t' {
		return errFolding // RFC 9112 §5.2: reject, or replace with spaces
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return errFieldLine // RFC 9112 §5.1: no space before the colon
	}
	name, value := line[:colon], trimOWS(line[colon+1:])
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errFieldValue
		}
	}
	h.fields++
	h.raw += rawLen
	h.size += len(name) + len(value) + headlimit.FieldOverhead
	if e := lim.Fields(h.fields, max(h.raw, h.size)); e != nil {
		return e
	}
	switch len(name) {
	case len("content-length"):
		if asciiEqualFold(name, "content-length") {
			n, ok := parseContentLength(value)
			if !ok || (h.cl >= 0 && n != h.cl) {
				return errContentLength
			}
			h.cl = n
		}
	case len("transfer-encoding"):
		if asciiEqualFold(name, "transfer-encoding") {
			h.te++
			h.chunked = asciiEqualFold(value, "chunked")
		}
	case len("upgrade"):
		if asciiEqualFold(name, "upgrade") {
			h.upgrade = true
		}
	}
	return nil
}

// framing checks how the body is delimited (RFC 9112 §6): a message with
// both Transfer-Encoding and Content-Length, or Transfer-Encoding in
// HTTP/1.0, may be an attempt at request smuggling and is refused (§6.1,
// §6.3: "ought to be handled as an error", connection closed); net/http
// would drop the Content-Length and keep the connection.
func (h *headScan) framing() *headlimit.Error {
	switch {
	case h.te == 0:
		return nil
	case h.cl >= 0:
		return errSmuggling
	case h.http10:
		return errTE10
	case h.te > 1 || !h.chunked:
		return errTE // net/http answers 501 too
	}
	return nil
}

// parseContentLength parses a Content-Length value as net/http does: one
// decimal number below 2^63.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n >= 1<<63 {
		return 0, false
	}
	return int64(n), true
}

// chunkScan follows a chunked body (RFC 9112 §7.1) to its end. It is
// stricter than net/http's reader: CRLF line ends only, trailer fields
// without line folding or control characters.
type chunkScan struct {
	state  chunkState
	line   int    // bytes of the current size or trailer line, CRLF excluded
	digits int    // hex digits of the chunk size
	n      uint64 // chunk size, then its bytes left
	excess int64  // net/http's guard against overhead: extensions, tiny chunks
	cr     bool   // a CR ended the line; LF must follow
	trail  int    // bytes of the trailer section
}

type chunkState uint8

const (
	chunkSize    chunkState = iota // hex digits
	chunkSizeOWS                   // spaces after the size: only the line end may follow
	chunkExt                       // after ';': anything but a CR until the line end
	chunkData                      // n bytes of data
	chunkDataCR                    // the CRLF after the data
	trailerStart                   // a trailer line, or the blank line that ends the body
	trailerName                    //
	trailerValue                   //
)

// scan follows b, the next bytes of the body. It returns the offset just
// past the body's end when b holds it, or -1; bad is the offset of the
// first byte that breaks the framing, or -1.
func (cs *chunkScan) scan(b []byte) (end, bad int) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if cs.state == chunkData {
			k := int(min(cs.n, uint64(len(b)-i)))
			cs.n -= uint64(k)
			i += k - 1
			if cs.n == 0 {
				cs.state = chunkDataCR
			}
			continue
		}
		if cs.cr {
			if c != '\n' {
				return -1, i
			}
			cs.cr = false
			if done, ok := cs.lineEnd(); !ok {
				return -1, i
			} else if done {
				return i + 1, -1
			}
			continue
		}
		switch {
		case c == '\r':
			cs.cr = true
			continue
		case c == '\n':
			return -1, i // bare LF
		}
		cs.line++
		switch cs.state {
		case chunkSize:
			switch {
			case isHex(c) && cs.digits < 16:
				cs.digits++
				cs.n = cs.n<<4 | uint64(unhex(c))
			case cs.digits == 0:
				return -1, i
			case c == ';':
				cs.state = chunkExt
			case c == ' ' || c == '\t':
				cs.state = chunkSizeOWS
			default:
				return -1, i
			}
		case chunkSizeOWS:
			if c != ' ' && c != '\t' {
				return -1, i
			}
		case chunkExt:
		case chunkDataCR:
			return -1, i // CR expected
		case trailerStart, trailerName:
			switch {
			case c == ':' && cs.state == trailerName:
				cs.state = trailerValue
			case isTokenByte(c):
				cs.state = trailerName
			default:
				return -1, i
			}
		case trailerValue:
			if c < ' ' && c != '\t' || c == 0x7f {
				return -1, i
			}
		}
		// The section ends with this line's CRLF and a blank line.
		if cs.line > maxChunkLine || cs.state >= trailerStart && cs.trail+cs.line+4 > maxTrailerSection {
			return -1, i
		}
	}
	return -1, -1
}

// lineEnd moves on at a CRLF. It returns done at the end of the body, and
// !ok for a line that breaks the framing.
func (cs *chunkScan) lineEnd() (done, ok bool) {
	line := cs.line
	cs.line = 0
	switch cs.state {
	case chunkSize, chunkSizeOWS, chunkExt:
		if cs.digits == 0 {
			return false, false
		}
		// net/http counts the size line against the data it announces.
		cs.excess += int64(line) + 2
		cs.excess -= 16 + (2 * int64(cs.n))
		cs.excess = max(cs.excess, 0)
		if cs.excess > 16*1024 {
			return false, false
		}
		cs.digits = 0
		if cs.n == 0 {
			cs.state = trailerStart
		} else {
			cs.state = chunkData
		}
	case chunkDataCR:
		cs.state = chunkSize
	case trailerStart:
		return true, true // the blank line
	case trailerName:
		return false, false // a field name without a colon
	case trailerValue:
		cs.trail += line + 2
		cs.state = trailerStart
	}
	return false, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isTokenByte reports whether c is a tchar (RFC 9110 §5.6.2).
func isTokenByte(c byte) bool {
	return tokenBytes[c]
}

var tokenBytes = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	for _, c := range b {
		if !tokenBytes[c] {
			return false
		}
	}
	return len(b) > 0
}

// trimOWS removes spaces and tabs around a field value.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// asciiEqualFold reports whether b is s, ignoring ASCII case; s is lower
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
