package governance

// lifecycle applies [RuleDeprecationSunset] and [RuleSunsetPassed] to
// every deprecated route.
func (c *checker) lifecycle() {
	for i := range c.in.Config.Routes {
		r := &c.in.Config.Routes[i]
		d := r.Deprecated
		if d == nil || r.Retired != nil {
			continue
		}
		subject := r.Selector
		if r.URI != "" {
			subject = r.URI
		}
		if d.Sunset == "" {
			c.add(Finding{
				Rule: RuleDeprecationSunset, Kind: KindRoute, Subject: subject, Pos: r.Pos,
				Message: "deprecated without a sunset: clients are told to move, but not by when",
				Fix:     "add the date it stops answering, e.g. deprecated: {sunset: 2027-06-30}",
			})
			continue
		}
		if t, ok := d.SunsetTime(); ok && !c.in.Now.Before(t) {
			c.add(Finding{
				Rule: RuleSunsetPassed, Severity: Warning, Kind: KindRoute, Subject: subject, Pos: r.Pos,
				Message: "sunset " + d.Sunset + " has passed, yet the route still answers",
				Fix:     "retire it (replace deprecated with retired: {link: ...}) or move the sunset later",
			})
		}
	}
}
