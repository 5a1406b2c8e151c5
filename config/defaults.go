package config

import (
	"path/filepath"
	"strings"
	"time"
)

// Defaults applied by Parse and FromFlags to values left unset (zero).
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 120 * time.Second
	defaultMaxHeaderBytes    = 61440
	defaultMaxHeaderCount    = 100
	defaultMaxURIBytes       = 8192
	defaultMaxBodyBytes      = 4 << 20
	defaultKind              = "grpc"
	defaultUpstreamTimeout   = 30 * time.Second
	defaultMaxMessageBytes   = 4 << 20
	defaultRefreshInterval   = 60 * time.Second
	defaultRedisTimeout      = 100 * time.Millisecond
)

// setDefaults fills unset values with their defaults and sets every
// Upstream.Name. It is idempotent.
func (c *Config) setDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		setDuration(&l.ReadHeaderTimeout, defaultReadHeaderTimeout)
		setDuration(&l.IdleTimeout, defaultIdleTimeout)
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = defaultMaxHeaderBytes
		}
		if l.MaxHeaderCount == 0 {
			l.MaxHeaderCount = defaultMaxHeaderCount
		}
		if l.MaxURIBytes == 0 {
			l.MaxURIBytes = defaultMaxURIBytes
		}
		if l.MaxBodyBytes == 0 {
			l.MaxBodyBytes = defaultMaxBodyBytes
		}
		if l.MaxConcurrentStreams == 0 {
			l.MaxConcurrentStreams = 250
		}
		if l.TLS != nil && l.TLS.ClientAuth == "" {
			l.TLS.ClientAuth = "none"
		}
	}
	if c.WebSocket.PingInterval == nil {
		d := Duration(30 * time.Second)
		c.WebSocket.PingInterval = &d
	}
	if c.WebSocket.IdleTimeout == nil {
		d := Duration(5 * time.Minute)
		c.WebSocket.IdleTimeout = &d
	}
	if c.WebSocket.MaxMessageBytes == 0 {
		c.WebSocket.MaxMessageBytes = 1 << 20
	}
	if c.CORS != nil {
		setDuration(&c.CORS.MaxAge, 2*time.Hour)
	}
	if c.Redis != nil {
		setDuration(&c.Redis.Timeout, defaultRedisTimeout)
	}
	for name, u := range c.Upstreams {
		if u == nil {
			u = &Upstream{}
			c.Upstreams[name] = u
		}
		u.Name = name
		if u.Kind == "" {
			u.Kind = defaultKind
		}
		setDuration(&u.Timeout, defaultUpstreamTimeout)
		if u.MaxMessageBytes == 0 {
			u.MaxMessageBytes = defaultMaxMessageBytes
		}
		if u.MaxRequestMessageBytes == 0 {
			u.MaxRequestMessageBytes = u.MaxMessageBytes
		}
		d := &u.Descriptors
		if d.Reflection == nil {
			// Explicit in both cases, so Normalized shows what happens.
			d.Reflection = ptr(d.UseReflection())
		}
		if d.RefreshInterval == nil {
			d.RefreshInterval = ptr(Duration(defaultRefreshInterval))
		}
		u.setResilienceDefaults()
	}
	c.pluginDefaults()
	c.tracingDefaults()
	c.manageDefaults()
	if c.OpenAPI != nil && c.OpenAPI.Path == "" {
		c.OpenAPI.Path = "/openapi.json"
	}
	t := &c.Transcoding
	if t.DefaultBindings == nil {
		t.DefaultBindings = ptr(true)
	}
	// Gateway-wide JSON options are all explicit after defaults, so that
	// Transcoding.JSON.Merge(route.JSON) yields complete options.
	t.JSON = JSONOptions{
		UseProtoNames:   ptr(false),
		EmitUnpopulated: ptr(false),
		UseEnumNumbers:  ptr(false),
		Int64AsNumbers:  ptr(false),
		DiscardUnknown:  ptr(false),
	}.Merge(t.JSON)
}

func setDuration(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

func ptr[T any](v T) *T { return &v }

// resolvePaths makes every relative file path absolute against base.
func (c *Config) resolvePaths(base string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	for i := range c.Listeners {
		if t := c.Listeners[i].TLS; t != nil {
			abs(&t.Cert)
			abs(&t.Key)
			abs(&t.ClientCA)
			for j := range t.Certificates {
				abs(&t.Certificates[j].Cert)
				abs(&t.Certificates[j].Key)
			}
		}
	}
	c.resolvePluginPaths(abs)
	for _, u := range c.Upstreams {
		if u.TLS != nil {
			abs(&u.TLS.CA)
			abs(&u.TLS.Cert)
			abs(&u.TLS.Key)
		}
		d := &u.Descriptors
		for _, list := range [][]string{d.Files, d.ImportPaths} {
			for i := range list {
				abs(&list[i])
			}
		}
		// Protos are names relative to the import paths, as for protoc;
		// without import paths, the config file's directory is the one.
		if len(d.Protos) > 0 && len(d.ImportPaths) == 0 {
			d.ImportPaths = []string{base}
		}
		for i, f := range d.Protos {
			if !filepath.IsAbs(f) {
				continue
			}
			for _, ip := range d.ImportPaths {
				if rel, err := filepath.Rel(ip, f); err == nil && !strings.HasPrefix(rel, "..") {
					d.Protos[i] = filepath.ToSlash(rel)
					break
				}
			}
		}
	}
}
