// Command vanguard is the vanguard-go peer of the load benchmark:
// connectrpc.com/vanguard's Transcoder fed by gRPC server reflection (no
// generated code: messages are dynamicpb), in front of bench/backend through
// an h2c reverse proxy, served on HTTP/1.1 and h2c. It prints its address
// on stdout once it listens.
//
//	go run ./peers/vanguard -listen 127.0.0.1:0 -backend 127.0.0.1:9000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/vanguard"
	"github.com/jhump/protoreflect/v2/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	// The google.api.http option must be a known extension when the
	// reflected descriptors are built, so that vanguard sees the bindings.
	_ "google.golang.org/genproto/googleapis/api/annotations"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve HTTP/1.1 and h2c on")
	backend := flag.String("backend", "", "the gRPC backend's host:port")
	flag.Parse()
	if err := run(*listen, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "bench/peers/vanguard:", err)
		os.Exit(1)
	}
}

func run(addr, backend string) error {
	if backend == "" {
		return errors.New("-backend is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	services, files, err := reflect(ctx, backend)
	if err != nil {
		return fmt.Errorf("reflect %s: %w", backend, err)
	}
	types := dynamicpb.NewTypes(files)
	proxy := newProxy(backend)
	var vs []*vanguard.Service
	for _, sd := range services {
		vs = append(vs, vanguard.NewServiceWithSchema(sd, proxy,
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithTypeResolver(types)))
	}
	t, err := vanguard.NewTranscoder(vs)
	if err != nil {
		return fmt.Errorf("new transcoder: %w", err)
	}
	return serve(ctx, addr, t)
}

// reflect fetches the backend's services (all but the reflection and
// health services) and every file they need.
func reflect(ctx context.Context, backend string) ([]protoreflect.ServiceDescriptor, *protoregistry.Files, error) {
	cc, err := grpc.NewClient("passthrough:///"+backend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	defer cc.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := grpcreflect.NewClientAuto(rctx, cc)
	names, err := client.ListServices()
	if err != nil {
		return nil, nil, fmt.Errorf("list services: %w", err)
	}
	files := new(protoregistry.Files)
	var services []protoreflect.ServiceDescriptor
	for _, name := range names {
		if strings.HasPrefix(string(name), "grpc.") {
			continue
		}
		fd, err := client.FileContainingSymbol(name)
		if err != nil {
			return nil, nil, fmt.Errorf("file of %s: %w", name, err)
		}
		if err := register(files, fd); err != nil {
			return nil, nil, err
		}
		services = append(services, fd.Services().ByName(name.Name()))
	}
	if len(services) == 0 {
		return nil, nil, errors.New("no services")
	}
	return services, files, nil
}

func register(files *protoregistry.Files, fd protoreflect.FileDescriptor) error {
	if _, err := files.FindFileByPath(fd.Path()); err == nil {
		return nil
	}
	imports := fd.Imports()
	for i := range imports.Len() {
		if err := register(files, imports.Get(i).FileDescriptor); err != nil {
			return err
		}
	}
	return files.RegisterFile(fd)
}

// newProxy forwards gRPC requests to the backend over h2c.
func newProxy(backend string) http.Handler {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	target := &url.URL{Scheme: "http", Host: backend}
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     &http.Transport{Protocols: &protocols, MaxIdleConnsPerHost: 64},
		FlushInterval: -1,
	}
}

// serve serves h on addr with HTTP/1.1 and h2c until ctx is done.
func serve(ctx context.Context, addr string, h http.Handler) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protocols}
	fmt.Println(lis.Addr().String())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
