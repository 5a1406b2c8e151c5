package rpc

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

// MaxMessageBytes caps one message of a gRPC-Web or Connect request (after
// decompression). Larger messages get RESOURCE_EXHAUSTED.
const MaxMessageBytes = 4 << 20

// CompressMinBytes is the smallest response message the Connect adapter
// compresses when the client accepts gzip; smaller ones are not worth it.
const CompressMinBytes = 1024

// Envelope flags shared by gRPC-Web and the Connect streaming protocol:
// every message is [flags:1][length:4, big-endian][payload:length].
const (
	FlagCompressed = 0x01 // payload is compressed with the stream's encoding
	FlagEndStream  = 0x02 // Connect: the end-of-stream message (JSON)
	FlagTrailer    = 0x80 // gRPC-Web: the trailer frame (an HTTP/1 header block)
)

// EnvelopeReader reads length-prefixed messages from a request body.
type EnvelopeReader struct {
	R        io.Reader
	Max      int
	Encoding string // "" or "identity": none; "gzip"
	What     string // "gRPC-Web frame" or "Connect envelope", for errors
}

// Next reads one message and returns its payload, decompressed. It returns
// io.EOF when the body ends cleanly between messages, and a *call.Error
// saying what is wrong with a malformed one.
func (e *EnvelopeReader) Next() ([]byte, error) {
	var hdr [5]byte
	n, err := io.ReadFull(e.R, hdr[:])
	if err != nil {
		if errors.Is(err, io.EOF) && n == 0 {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, call.Errorf(codes.InvalidArgument, "truncated %s: the body ended after %d of the 5 prefix bytes", e.What, n)
		}
		return nil, ReadError(err, e.What)
	}
	flags := hdr[0]
	size := binary.BigEndian.Uint32(hdr[1:])
	if int64(size) > int64(e.Max) {
		return nil, call.Errorf(codes.ResourceExhausted, "%s of %d bytes is larger than the limit of %d bytes", e.What, size, e.Max)
	}
	if flags&^FlagCompressed != 0 {
		return nil, call.Errorf(codes.InvalidArgument, "%s has unknown flags 0x%02x: requests carry only data messages (flag 0x00, or 0x01 when compressed)", e.What, flags)
	}
	payload := make([]byte, size)
	if n, err := io.ReadFull(e.R, payload); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, call.Errorf(codes.InvalidArgument, "truncated %s: its prefix says %d bytes but the body ended after %d", e.What, size, n)
		}
		return nil, ReadError(err, e.What)
	}
	if flags&FlagCompressed == 0 {
		return payload, nil
	}
	if e.Encoding == "" || e.Encoding == "identity" {
		// A protocol error rather than a bad argument (connect-go and
		// grpc-go answer INTERNAL).
		return nil, call.Errorf(codes.Internal, "%s is flagged compressed but the request names no message encoding", e.What)
	}
	return Decompress(e.Encoding, payload, e.Max)
}

// ReadError turns a body read error into a client-facing error.
func ReadError(err error, what string) error {
	var ce *call.Error
	if errors.As(err, &ce) {
		return ce
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return call.Errorf(codes.ResourceExhausted, "request body is larger than the limit of %d bytes", mbe.Limit).WithCause(err)
	}
	return call.Errorf(codes.InvalidArgument, "read %s: %v", what, err).WithCause(err)
}

// Decompress decodes a payload compressed with encoding, refusing results
// larger than max bytes.
func Decompress(encoding string, payload []byte, max int) ([]byte, error) {
	if encoding != "gzip" {
		return nil, call.Errorf(codes.Unimplemented, "unsupported message encoding %q: send gzip or identity", encoding)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, call.Errorf(codes.InvalidArgument, "invalid gzip data: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, call.Errorf(codes.InvalidArgument, "invalid gzip data: %v", err)
	}
	if len(out) > max {
		return nil, call.Errorf(codes.ResourceExhausted, "decompressed message is larger than the limit of %d bytes", max)
	}
	return out, nil
}

// GzipBytes compresses b.
func GzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// AppendEnvelope appends one length-prefixed message to dst.
func AppendEnvelope(dst []byte, flags byte, payload []byte) []byte {
	var hdr [5]byte
	hdr[0] = flags
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	dst = append(dst, hdr[:]...)
	return append(dst, payload...)
}

// AcceptsEncoding reports whether a comma-separated Accept-Encoding style
// header value lists enc.
func AcceptsEncoding(values []string, enc string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			name, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(name), enc) {
				return true
			}
		}
	}
	return false
}

// base64Reader decodes a grpc-web-text request body as it streams in. The
// body is base64 (standard alphabet) and may be several padded chunks
// concatenated, so it is decoded one 4-character group at a time across
// reads; whitespace is skipped.
type base64Reader struct {
	r     io.Reader
	buf   []byte // read, not yet decoded (less than one group after decode)
	out   []byte // decoded, not yet returned
	ended bool
	err   error
}

// NewBase64Reader decodes the base64 text of a grpc-web-text body, whose
// concatenated frames may each carry padding.
func NewBase64Reader(r io.Reader) io.Reader {
	return &base64Reader{r: r, buf: make([]byte, 0, 4096)}
}

// Read implements io.Reader.
func (b *base64Reader) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.ended {
			if len(b.buf) > 0 {
				b.err = call.Errorf(codes.InvalidArgument, "invalid grpc-web-text body: it ends with %d base64 characters, not a whole 4-character group", len(b.buf))
			} else {
				b.err = io.EOF
			}
			continue
		}
		var chunk [4096]byte
		n, err := b.r.Read(chunk[:])
		for _, c := range chunk[:n] {
			if c != ' ' && c != '\r' && c != '\n' && c != '\t' {
				b.buf = append(b.buf, c)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				b.err = err
				continue
			}
			b.ended = true
		}
		if derr := b.decode(); derr != nil {
			b.err = derr
		}
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// decode decodes every whole group in buf into out, each run of groups
// ending at a padded group separately (padding may only end a chunk).
func (b *base64Reader) decode() error {
	whole := len(b.buf) / 4 * 4
	src := b.buf[:whole]
	for len(src) > 0 {
		end := len(src)
		if i := bytes.IndexByte(src, '='); i >= 0 {
			end = (i/4 + 1) * 4
		}
		dst := make([]byte, base64.StdEncoding.DecodedLen(end))
		n, err := base64.StdEncoding.Decode(dst, src[:end])
		if err != nil {
			return call.Errorf(codes.InvalidArgument, "invalid grpc-web-text body: not base64: %v", err)
		}
		b.out = append(b.out, dst[:n]...)
		src = src[end:]
	}
	b.buf = append(b.buf[:0], b.buf[whole:]...)
	return nil
}

// CheckNoMore reports an error when a request that must hold exactly one
// message has more.
func CheckNoMore(e *EnvelopeReader, method string) error {
	_, err := e.Next()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	}
	return call.Errorf(codes.Unimplemented, "method %s takes one request message, but the request has more", method)
}
