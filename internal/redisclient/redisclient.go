// Package redisclient builds the go-redis client of the config's redis
// block, shared in shape by rate-limiting (policy: redis) and proxy-cache
// (store: redis).
package redisclient

import (
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/rosetta-gateway/rosetta/config"
)

// New returns a client for cfg. It connects lazily. Each command is
// bounded by its caller's context; the timeouts below only cap a context
// without a deadline, and a dead server fails fast (one dial attempt, one
// retry for a pooled connection the server closed): a policy or a cache
// must never make a call wait long.
func New(cfg *config.Redis) (*redis.Client, error) {
	opts := &redis.Options{
		Addr:     cfg.Address,
		Username: cfg.Username,
		Password: cfg.Password,
		DB:       cfg.DB,
		// RESP2 and no CLIENT SETINFO: every Redis since 2.6 (scripts)
		// understands the connection handshake.
		Protocol:                 2,
		DisableIdentity:          true,
		ContextTimeoutEnabled:    true,
		DialTimeout:              time.Second,
		ReadTimeout:              time.Second,
		WriteTimeout:             time.Second,
		PoolTimeout:              time.Second,
		DialerRetries:            1,
		MaxRetries:               1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.TLSConfig("redis")
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
	}
	return redis.NewClient(opts), nil
}
