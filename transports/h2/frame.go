package h2

import (
	"golang.org/x/net/http2"
)

// Frames are written by appending them to a connection's output buffer;
// x/net/http2's Framer would copy every payload twice on the way.

const (
	// defaultMaxFrameSize is SETTINGS_MAX_FRAME_SIZE until the peer says
	// otherwise (RFC 9113 §6.5.2).
	defaultMaxFrameSize = 16 << 10
	// defaultWindow is the initial flow-control window of a connection
	// and of every stream (RFC 9113 §6.9.2).
	defaultWindow = 65535
	// maxWindow is the largest flow-control window (2^31-1).
	maxWindow = 1<<31 - 1
	// clientPreface is what every HTTP/2 client sends first.
	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

func appendFrameHeader(b []byte, length int, typ http2.FrameType, flags http2.Flags, stream uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(typ), byte(flags),
		byte(stream>>24)&0x7f, byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendData(b []byte, stream uint32, end bool, p []byte) []byte {
	var flags http2.Flags
	if end {
		flags = http2.FlagDataEndStream
	}
	b = appendFrameHeader(b, len(p), http2.FrameData, flags, stream)
	return append(b, p...)
}

func appendRSTStream(b []byte, stream uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, stream)
	return appendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, stream uint32, inc uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, stream)
	return appendUint32(b, inc&0x7fffffff)
}

func appendPing(b []byte, ack bool, data [8]byte) []byte {
	var flags http2.Flags
	if ack {
		flags = http2.FlagPingAck
	}
	b = appendFrameHeader(b, 8, http2.FramePing, flags, 0)
	return append(b, data[:]...)
}

func appendSettings(b []byte, settings ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(settings), http2.FrameSettings, 0, 0)
	for _, s := range settings {
		b = append(b, byte(s.ID>>8), byte(s.ID))
		b = appendUint32(b, s.Val)
	}
	return b
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

func appendGoAway(b []byte, lastStream uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), http2.FrameGoAway, 0, 0)
	b = appendUint32(b, lastStream&0x7fffffff)
	b = appendUint32(b, uint32(code))
	return append(b, debug...)
}

// appendHeaderBlock writes an encoded header block as HEADERS and, when
// it exceeds maxFrame, CONTINUATION frames.
func appendHeaderBlock(b []byte, stream uint32, end bool, block []byte, maxFrame int) []byte {
	typ := http2.FrameHeaders
	for {
		chunk := block
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		block = block[len(chunk):]
		var flags http2.Flags
		if typ == http2.FrameHeaders && end {
			flags |= http2.FlagHeadersEndStream
		}
		if len(block) == 0 {
			flags |= http2.FlagHeadersEndHeaders
		}
		b = appendFrameHeader(b, len(chunk), typ, flags, stream)
		b = append(b, chunk...)
		if len(block) == 0 {
			return b
		}
		typ = http2.FrameContinuation
	}
}
