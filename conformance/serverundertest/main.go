// Command serverundertest puts Rosetta under the Connect conformance suite
// (connectrpc.com/conformance) as a "server": it reads the runner's
// ServerCompatRequest on stdin, starts the suite's reference server as a
// plain gRPC backend, starts a Rosetta gateway in front of it configured
// as the request asks (TLS, message size limit), and answers with the
// gateway's address. The suite's reference client then calls the gateway
// with Connect, gRPC and gRPC-Web, so every case checks Rosetta's protocol
// translation against a conformant backend.
//
// Usage (see conformance/README.md and `make conformance`):
//
//	connectconformance --mode server --conf conformance/config.yaml -- \
//	    serverundertest -referenceserver .tmp/bin/referenceserver -protos <conformance module>/proto
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/gateway"
)

// compatRequest holds the fields of connectrpc.conformance.v1.ServerCompatRequest
// the gateway needs.
type compatRequest struct {
	useTLS       bool
	clientCert   []byte
	receiveLimit uint64
	cert, key    []byte
}

// Field numbers of ServerCompatRequest and TLSCreds (server_compat.proto,
// config.proto).
const (
	fieldUseTLS       = 4
	fieldClientCert   = 5
	fieldReceiveLimit = 6
	fieldServerCreds  = 7
	fieldCredsCert    = 1
	fieldCredsKey     = 2
)

func main() {
	refServer := flag.String("referenceserver", "referenceserver", "the suite's reference server binary (the backend)")
	protos := flag.String("protos", "", "directory holding connectrpc/conformance/v1/*.proto (the conformance module's proto/)")
	logLevel := flag.String("log-level", "warn", "gateway log level on stderr: debug, info, warn, error")
	flag.Parse()
	if err := run(*refServer, *protos, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "serverundertest:", err)
		os.Exit(1)
	}
}

func run(refServer, protos, logLevel string) error {
	if protos == "" {
		return errors.New("-protos is required: the conformance module's proto directory")
	}
	raw, err := readDelimited(os.Stdin)
	if err != nil {
		return fmt.Errorf("read ServerCompatRequest: %w", err)
	}
	req, err := parseRequest(raw)
	if err != nil {
		return err
	}

	// The backend: the reference server speaking gRPC over h2c.
	backendAddr, stopBackend, err := startReferenceServer(refServer)
	if err != nil {
		return err
	}
	defer stopBackend()

	dir, err := os.MkdirTemp("", "rosetta-conformance-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file, err := writeConfig(dir, req, backendAddr, protos)
	if err != nil {
		return err
	}
	cfg, err := config.Load(file)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g, err := gateway.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	}()

	port := g.Addrs()[0].(*net.TCPAddr).Port
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendString(resp, "127.0.0.1")
	resp = protowire.AppendTag(resp, 2, protowire.VarintType)
	resp = protowire.AppendVarint(resp, uint64(port))
	if req.useTLS {
		resp = protowire.AppendTag(resp, 3, protowire.BytesType)
		resp = protowire.AppendBytes(resp, req.cert)
	}
	if err := writeDelimited(os.Stdout, resp); err != nil {
		return fmt.Errorf("write ServerCompatResponse: %w", err)
	}

	// Serve until the runner signals (it closes stdin right after the
	// request, so that is no sign to stop).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	return nil
}

func parseRequest(b []byte) (compatRequest, error) {
	var req compatRequest
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return req, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldUseTLS && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			req.useTLS, n = v != 0, m
		case num == fieldReceiveLimit && typ == protowire.VarintType:
			req.receiveLimit, n = protowire.ConsumeVarint(b)
		case num == fieldClientCert && typ == protowire.BytesType:
			req.clientCert, n = protowire.ConsumeBytes(b)
		case num == fieldServerCreds && typ == protowire.BytesType:
			var creds []byte
			creds, n = protowire.ConsumeBytes(b)
			for len(creds) > 0 {
				cn, ct, k := protowire.ConsumeTag(creds)
				if k < 0 {
					return req, protowire.ParseError(k)
				}
				creds = creds[k:]
				if ct != protowire.BytesType {
					k = protowire.ConsumeFieldValue(cn, ct, creds)
				} else {
					var v []byte
					v, k = protowire.ConsumeBytes(creds)
					switch cn {
					case fieldCredsCert:
						req.cert = v
					case fieldCredsKey:
						req.key = v
					}
				}
				if k < 0 {
					return req, protowire.ParseError(k)
				}
				creds = creds[k:]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return req, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return req, nil
}

// writeConfig writes the gateway's rosetta.yaml for one run.
func writeConfig(dir string, req compatRequest, backend, protos string) (string, error) {
	listener := `  - address: "127.0.0.1:0"` + "\n"
	if req.useTLS {
		cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
		if err := os.WriteFile(cert, req.cert, 0o600); err != nil {
			return "", err
		}
		if err := os.WriteFile(key, req.key, 0o600); err != nil {
			return "", err
		}
		listener += fmt.Sprintf("    tls: { cert: %q, key: %q", cert, key)
		if len(req.clientCert) > 0 {
			ca := filepath.Join(dir, "client-ca.pem")
			if err := os.WriteFile(ca, req.clientCert, 0o600); err != nil {
				return "", err
			}
			listener += fmt.Sprintf(", client_ca: %q, client_auth: require", ca)
		}
		listener += " }\n    http3: true\n"
	}
	limit := ""
	if req.receiveLimit > 0 {
		// The suite's limit is on what the server receives: requests.
		limit = "    max_request_message_bytes: " + strconv.FormatUint(req.receiveLimit, 10) + "\n"
	}
	yaml := "listeners:\n" + listener + `upstreams:
  conformance:
    targets: ["` + backend + `"]
` + limit + `    descriptors:
      protos: ["connectrpc/conformance/v1/service.proto"]
      import_paths: ["` + protos + `"]
`
	file := filepath.Join(dir, "rosetta.yaml")
	return file, os.WriteFile(file, []byte(yaml), 0o600)
}

// startReferenceServer runs the suite's reference server as a gRPC
// backend over h2c and returns its address.
func startReferenceServer(bin string) (string, func(), error) {
	cmd := exec.Command(bin)
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	// Pdeathsig follows the thread that started the child: keep it.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start the reference server %s: %w", bin, err)
	}
	stop := func() {
		_ = in.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	// protocol gRPC (2) over HTTP/2 (2), cleartext.
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, 2)
	req = protowire.AppendTag(req, 2, protowire.VarintType)
	req = protowire.AppendVarint(req, 2)
	if err := writeDelimited(in, req); err != nil {
		stop()
		return "", nil, err
	}
	resp, err := readDelimited(bufio.NewReader(out))
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("read the reference server's ServerCompatResponse: %w", err)
	}
	var host string
	var port uint64
	for len(resp) > 0 {
		num, typ, n := protowire.ConsumeTag(resp)
		if n < 0 {
			stop()
			return "", nil, protowire.ParseError(n)
		}
		resp = resp[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(resp)
			host = string(v)
		case num == 2 && typ == protowire.VarintType:
			port, n = protowire.ConsumeVarint(resp)
		default:
			n = protowire.ConsumeFieldValue(num, typ, resp)
		}
		if n < 0 {
			stop()
			return "", nil, protowire.ParseError(n)
		}
		resp = resp[n:]
	}
	return net.JoinHostPort(host, strconv.FormatUint(port, 10)), stop, nil
}

func readDelimited(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeDelimited(w io.Writer, b []byte) error {
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(b)))
	if _, err := w.Write(size[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}
