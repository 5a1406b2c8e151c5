package h2call_test

import (
	"context"
	"crypto/tls"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/rosetta-gateway/rosetta/internal/testkit"
	testingv1 "github.com/rosetta-gateway/rosetta/proto/gen/rosetta/testing/v1"
	"github.com/rosetta-gateway/rosetta/transports/h2"
	"github.com/rosetta-gateway/rosetta/upstream/h2call"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	ca := testkit.NewCA(t, "h2call test CA")
	leaf := ca.Issue(t, "backend", "127.0.0.1", "localhost")
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12})
	be := testkit.StartBackend(t, testkit.WithServerOptions(grpc.Creds(creds)))
	rec := &outcomes{ch: make(chan struct{}, 1)}
	tgt := h2call.NewTarget(be.Addr, h2.ClientOptions{TLS: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}})
	t.Cleanup(func() { _ = tgt.Close() })
	cc := h2call.New(h2call.Options{Pick: func(ctx context.Context, method string) (h2call.Attempt, error) {
		a, err := tgt.Pick(ctx, method)
		a.Finish = rec.add
		return a, err
	}})
	got, err := testingv1.NewEchoServiceClient(cc).Echo(context.Background(), everything())
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, everything()) {
		t.Fatal("echo differs")
	}
	if out := rec.wait(t, 1); out.Kind != h2call.Answered {
		t.Fatalf("outcome = %+v; want answered", out)
	}
}
