package rpc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"google.golang.org/grpc/codes"

	"github.com/rosetta-gateway/rosetta/call"
)

func TestBase64Reader(t *testing.T) {
	t.Parallel()
	data := []byte("hello, grpc-web-text world!")
	enc := base64.StdEncoding.EncodeToString
	tests := []struct {
		name string
		in   string
		want []byte
	}{
		{"one chunk", enc(data), data},
		{"padded chunks concatenated", enc(data[:4]) + enc(data[4:5]) + enc(data[5:]), data},
		{"with newlines", enc(data[:10]) + "\r\n" + enc(data[10:]), data},
		{"empty", "", nil},
	}
	for _, tc := range tests {
		for _, split := range []string{"whole", "one byte per read"} {
			t.Run(tc.name+"/"+split, func(t *testing.T) {
				t.Parallel()
				var r io.Reader = strings.NewReader(tc.in)
				if split != "whole" {
					r = iotest.OneByteReader(r)
				}
				got, err := io.ReadAll(NewBase64Reader(r))
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, tc.want) {
					t.Errorf("got %q; want %q", got, tc.want)
				}
			})
		}
	}
}

func TestBase64ReaderErrors(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"not base64":    "!!!!",
		"partial group": "aGVsbG8",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := io.ReadAll(NewBase64Reader(strings.NewReader(in)))
			var ce *call.Error
			if !errors.As(err, &ce) || ce.Code != codes.InvalidArgument {
				t.Fatalf("got %v; want an InvalidArgument call error", err)
			}
		})
	}
}

func TestEnvelopeReader(t *testing.T) {
	t.Parallel()
	good := AppendEnvelope(nil, 0, []byte("abc"))
	zipped := AppendEnvelope(nil, FlagCompressed, GzipBytes([]byte("abc")))
	tests := []struct {
		name     string
		body     []byte
		encoding string
		want     string
		code     codes.Code
	}{
		{"message", good, "", "abc", codes.OK},
		{"gzip message", zipped, "gzip", "abc", codes.OK},
		{"compressed without encoding", zipped, "", "", codes.Internal},
		{"unknown encoding", zipped, "br", "", codes.Unimplemented},
		{"truncated prefix", good[:3], "", "", codes.InvalidArgument},
		{"truncated message", good[:6], "", "", codes.InvalidArgument},
		{"huge length", []byte{0, 0xff, 0xff, 0xff, 0xff}, "", "", codes.ResourceExhausted},
		{"trailer flag", AppendEnvelope(nil, FlagTrailer, nil), "", "", codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &EnvelopeReader{R: bytes.NewReader(tc.body), Max: 1 << 20, Encoding: tc.encoding, What: "frame"}
			got, err := e.Next()
			if tc.code == codes.OK {
				if err != nil || string(got) != tc.want {
					t.Fatalf("got %q, %v; want %q", got, err, tc.want)
				}
				if _, err := e.Next(); !errors.Is(err, io.EOF) {
					t.Errorf("second read: got %v; want io.EOF", err)
				}
				return
			}
			var ce *call.Error
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("got %v; want code %v", err, tc.code)
			}
		})
	}
}
