package config

import (
	"testing"
	"time"
)

func TestDeprecationTimes(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want time.Time
		ok   bool
	}{
		{"unset", "", time.Time{}, false},
		{"date", "2027-06-30", time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC), true},
		{"rfc3339", "2027-06-30T12:00:00+02:00", time.Date(2027, 6, 30, 12, 0, 0, 0, berlin), true},
		{"bad", "next year", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &Deprecation{Since: tt.in, Sunset: tt.in}
			for _, f := range []func() (time.Time, bool){d.SinceTime, d.SunsetTime} {
				got, ok := f()
				if ok != tt.ok || !got.Equal(tt.want) {
					t.Errorf("got %v, %t; want %v, %t", got, ok, tt.want, tt.ok)
				}
			}
		})
	}
	var none *Deprecation
	if _, ok := none.SunsetTime(); ok {
		t.Error("nil Deprecation: got ok; want not ok")
	}
}

func TestQuotaLocation(t *testing.T) {
	t.Parallel()
	for _, tz := range []string{"", "UTC"} {
		if got := (&Quota{TimeZone: tz}).Location(); got != time.UTC {
			t.Errorf("time_zone %q: got %v; want UTC", tz, got)
		}
	}
	q := &Quota{TimeZone: "America/New_York"}
	loc := q.Location()
	if loc.String() != "America/New_York" {
		t.Fatalf("got %v; want America/New_York", loc)
	}
	if again := q.Location(); again != loc {
		t.Error("second call: got another *time.Location; want the cached one")
	}
	if got := (&Quota{TimeZone: "Mars/Olympus"}).Location(); got != time.UTC {
		t.Errorf("unknown zone: got %v; want UTC", got)
	}
	var none *Quota
	if none.Location() != time.UTC {
		t.Error("nil Quota: want UTC")
	}
}

// A config from Parse names every plan and fills the defaults.
func TestPlanDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("rosetta.yaml", []byte(`
listeners: [{address: ":8080"}]
upstreams: {backend: {targets: ["localhost:9000"]}}
plugins: [{key-auth: {}}]
plans:
  free:  { quota: { limit: 10000, period: month }, rate: { limit: 10, period: 1 } }
  gold:  { quota: { limit: 10000000, period: month, time_zone: Asia/Tokyo } }
consumers:
  - { name: alice, keys: ["k1"], plan: gold }
portal: {}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range c.Plans {
		if p.Name != name {
			t.Errorf("plans.%s: got Name %q; want %q", name, p.Name, name)
		}
	}
	if got := c.Plans["free"].Quota.TimeZone; got != "UTC" {
		t.Errorf("free: got time_zone %q; want UTC", got)
	}
	if got := c.Plans["gold"].Quota.Location().String(); got != "Asia/Tokyo" {
		t.Errorf("gold: got location %q; want Asia/Tokyo", got)
	}
	if got := c.Plans["free"].Rate.Period.Std(); got != time.Second {
		t.Errorf("free: got rate period %v; want 1s", got)
	}
	if c.Portal.Path != "/portal" || c.Portal.Title != "API portal" {
		t.Errorf("portal: got path %q, title %q; want /portal, API portal", c.Portal.Path, c.Portal.Title)
	}
	if c.Plans["gold"].Pos.Line != 7 {
		t.Errorf("gold: got Pos %v; want line 7", c.Plans["gold"].Pos)
	}
}
