package keystore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/internal/testkit"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestMemoryStore(t *testing.T) {
	ctx := context.Background()
	s, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, secret, err := s.Create(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "rk_") || len(secret) != 35 || k.Hash != Hash(secret) || strings.Contains(k.Masked, secret[7:30]) {
		t.Errorf("key %+v, secret %q", k, secret)
	}
	if c, ok, pending := s.LookupLocal(Hash(secret)); c != "alice" || !ok || pending {
		t.Errorf("LookupLocal: %q %v %v; want alice, known, not pending", c, ok, pending)
	}
	if _, ok, _ := s.LookupLocal(Hash("rk_unknown")); ok {
		t.Error("an unknown key is known")
	}
	if keys, _ := s.List(ctx, "bob"); len(keys) != 0 {
		t.Errorf("bob's keys: %v", keys)
	}
	if err := s.Revoke(ctx, "bob", k.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob revokes alice's key: %v; want ErrNotFound", err)
	}
	if err := s.Revoke(ctx, "alice", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.LookupLocal(Hash(secret)); ok {
		t.Error("a revoked key is known")
	}
}

func TestMaxKeysPerConsumer(t *testing.T) {
	ctx := context.Background()
	s, _ := New(nil)
	for i := 0; i < MaxKeysPerConsumer; i++ {
		if _, _, err := s.Create(ctx, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Create(ctx, "alice"); err == nil || !strings.Contains(err.Error(), "at most 20 self-service keys: revoke one first") {
		t.Errorf("the 21st key: %v", err)
	}
}

// TestRedisStoreTwoInstances: a key created on one instance is accepted
// by another at once; its revocation reaches the other once its cached
// answer expires, and the revoking instance at once.
func TestRedisStoreTwoInstances(t *testing.T) {
	rd := testkit.StartRedis(t)
	ctx := context.Background()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	a, err := New(&config.Redis{Address: rd.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := New(&config.Redis{Address: rd.Addr})
	defer b.Close()
	a.now, b.now = clock.now, clock.now

	h := Hash("rk_not-yet")
	if _, _, pending := b.LookupLocal(h); !pending {
		t.Fatal("an uncached key is not pending on a Redis store")
	}
	if _, ok, err := b.Lookup(ctx, h); ok || err != nil {
		t.Fatalf("unknown key: %v %v", ok, err)
	}
	if _, ok, pending := b.LookupLocal(h); ok || pending {
		t.Error("an unknown key is not cached as unknown")
	}
	k, secret, err := a.Create(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if c, ok, err := b.Lookup(ctx, Hash(secret)); c != "alice" || !ok || err != nil {
		t.Fatalf("instance b: %q %v %v; want alice", c, ok, err)
	}
	if keys, _ := b.List(ctx, "alice"); len(keys) != 1 || keys[0].ID != k.ID {
		t.Errorf("b lists %v", keys)
	}
	if err := a.Revoke(ctx, "alice", k.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := a.Lookup(ctx, Hash(secret)); ok {
		t.Error("the revoking instance still accepts the key")
	}
	if c, ok, pending := b.LookupLocal(Hash(secret)); !ok || pending || c != "alice" {
		t.Errorf("b before its cache expires: %q %v %v; want the cached alice", c, ok, pending)
	}
	clock.t = clock.t.Add(positiveTTL + time.Second)
	if _, ok, err := b.Lookup(ctx, Hash(secret)); ok || err != nil {
		t.Errorf("b after its cache expired: %v %v; want unknown", ok, err)
	}
	// Redis down: an error the caller renders as UNAVAILABLE.
	rd.Stop()
	if _, _, err := b.Lookup(ctx, Hash("rk_other")); err == nil || !strings.HasPrefix(err.Error(), "key store: ") {
		t.Errorf("Redis down: %v", err)
	}
}
