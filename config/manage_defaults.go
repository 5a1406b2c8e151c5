package config

import "time"

// API-management defaults, applied by Parse and FromFlags.
const (
	defaultQuotaTimeZone = "UTC"
	defaultPortalPath    = "/portal"
	defaultPortalTitle   = "API portal"
	defaultFlushInterval = 10 * time.Second
	minFlushInterval     = time.Second
)

// manageDefaults fills the unset API-management settings: every
// Plan.Name (its key in plans), quota time zones, the portal's path and
// title and the analytics flush interval. It is idempotent.
func (c *Config) manageDefaults() {
	for name, p := range c.Plans {
		if p == nil {
			p = &Plan{}
			c.Plans[name] = p
		}
		p.Name = name
		if q := p.Quota; q != nil && q.TimeZone == "" {
			q.TimeZone = defaultQuotaTimeZone
		}
	}
	if p := c.Portal; p != nil {
		if p.Path == "" {
			p.Path = defaultPortalPath
		}
		if p.Title == "" {
			p.Title = defaultPortalTitle
		}
	}
	if a := c.Analytics; a != nil && a.FlushInterval == 0 {
		a.FlushInterval = Duration(defaultFlushInterval)
	}
}
