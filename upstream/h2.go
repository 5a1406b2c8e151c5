package upstream

// Scheme returns the :scheme of requests to the upstream: "https" when
// the upstream has tls, "http" otherwise.
func (u *Upstream) Scheme() string {
	if u.Config.TLS != nil {
		return "https"
	}
	return "http"
}

// Pick returns the target (host:port) for one RPC, chosen by the
// upstream's balancer (its algorithm, health, ejections and connection
// state). It never blocks and is safe for concurrent use. Callers that
// can report how the call went use [Cluster.PickEndpoint] instead.
func (u *Upstream) Pick() string {
	e, err := u.PickEndpoint(0, nil)
	if err != nil {
		return u.Config.Targets[0].Address
	}
	return e.Addr()
}
