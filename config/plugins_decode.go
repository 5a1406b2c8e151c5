package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	pluginType     = reflect.TypeFor[Plugin]()
	periodType     = reflect.TypeFor[Period]()
	stringListType = reflect.TypeFor[StringList]()
	targetType     = reflect.TypeFor[Target]()
	sizeType       = reflect.TypeFor[Size]()
)

// special decodes the types whose YAML form differs from their Go shape
// (a plugins entry, a period, a string list, a target, a size). It
// reports whether v was one of them.
func (d *decoder) special(n *yaml.Node, v reflect.Value, path string) bool {
	switch v.Type() {
	case pluginType:
		d.plugin(n, v, path)
	case periodType:
		d.period(n, v, path)
	case stringListType:
		d.stringList(n, v, path)
	case targetType:
		d.target(n, v, path)
	case sizeType:
		d.size(n, v, path)
	default:
		return false
	}
	return true
}

// target decodes an upstream target: a "host:port" string (weight 1) or
// a mapping {address, weight}.
func (d *decoder) target(n *yaml.Node, v reflect.Value, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if s, ok := d.scalar(n, path, "an address"); ok {
			v.Set(reflect.ValueOf(Target{Address: s, Weight: 1}))
		}
	case yaml.MappingNode:
		d.structure(n, v, path)
	default:
		d.report(n, path, fmt.Sprintf(`expected a target ("host:port" or {address, weight}), got %s`, describe(n)),
			`e.g. "10.0.0.5:9000" or {address: "10.0.0.5:9000", weight: 2}`)
	}
}

const sizeHint = `write bytes as an integer (1048576) or with a unit, e.g. "64MiB", "512KiB", "1GB"`

// sizeUnits are the units a size may carry: SI units are powers of 1000,
// IEC units powers of 1024.
var sizeUnits = map[string]int64{
	"B": 1, "KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}

// sizeUnitNames lists sizeUnits for messages, in size order.
var sizeUnitNames = []string{"B", "KB", "KiB", "MB", "MiB", "GB", "GiB"}

// size decodes a byte count: an integer, or a number with a unit.
func (d *decoder) size(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a size")
	if !ok {
		return
	}
	b, msg, hint := parseSize(s)
	if msg != "" {
		d.report(n, path, msg, hint)
		return
	}
	if b == 0 {
		d.zero[path] = true
	}
	v.SetInt(b)
}

// parseSize parses a size, or returns what is wrong with it and a hint.
func parseSize(s string) (n int64, msg, hint string) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Sprintf("size must not be negative, got %q", s), ""
	}
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Sprintf("invalid size %q", s), sizeHint
	}
	if strings.HasPrefix(unit, ".") {
		return 0, fmt.Sprintf("invalid size %q: fractions are not supported", s), "use a smaller unit, e.g. 1536MiB for 1.5GiB"
	}
	mult := int64(1)
	if unit != "" {
		m, known := sizeUnits[unit]
		if !known {
			hint := fmt.Sprintf("units are %s (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)", strings.Join(sizeUnitNames, ", "))
			for _, u := range sizeUnitNames {
				if strings.EqualFold(u, unit) {
					hint = fmt.Sprintf("did you mean %q?", num+u)
					break
				}
			}
			return 0, fmt.Sprintf("invalid size %q: unknown unit %q", s, unit), hint
		}
		mult = m
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v > math.MaxInt64/mult {
		return 0, fmt.Sprintf("size %q is too large", s), ""
	}
	return v * mult, "", ""
}

// plugin decodes one plugins entry: a mapping with exactly one key, the
// plugin name, whose value holds the plugin's settings.
func (d *decoder) plugin(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		hint := `write "- name: {settings}", e.g. "- key-auth: {}"`
		if n.Kind == yaml.ScalarNode && slices.Contains(pluginNames, n.Value) {
			hint = fmt.Sprintf(`write "- %s: {}" to use the defaults`, n.Value)
		}
		d.report(n, path, fmt.Sprintf("expected a plugin (a mapping with one key, the plugin name), got %s", describe(n)), hint)
		return
	}
	v.FieldByName("Pos").Set(reflect.ValueOf(d.pos(n)))
	fields := fieldsOf(v.Type())
	pairs := d.pairs(n, path)
	if len(pairs) == 0 {
		d.report(n, path, "empty plugins entry", `name one plugin, e.g. "- key-auth: {}"`)
		return
	}
	first := ""
	for _, p := range pairs {
		name := p.key.Value
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == name })
		if i < 0 {
			hint := ""
			if best := closest(name, pluginNames); best != "" {
				hint = fmt.Sprintf("did you mean %q?", best)
			}
			d.report(p.key, path, fmt.Sprintf("unknown plugin %q (known: %s)", name, strings.Join(pluginNames, ", ")), hint)
			continue
		}
		child := joinKey(path, name)
		d.index.key[child] = d.pos(p.key)
		if first != "" {
			d.report(p.key, child, fmt.Sprintf("a plugins entry names one plugin, and this one also names %q", first),
				fmt.Sprintf(`start %q as its own list item, with "- "`, name))
			continue
		}
		first = name
		f := v.Field(fields[i].index)
		d.decode(p.val, f, child)
		if f.IsNil() && !d.bad[child] {
			// "- key-auth:" (no settings) enables the plugin with its
			// defaults.
			f.Set(reflect.New(f.Type().Elem()))
		}
	}
}

const periodHint = `write seconds as an integer (3600) or a duration with a unit ("1h", "90s")`

// period decodes an integer number of seconds or a duration string.
func (d *decoder) period(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a period")
	if !ok {
		return
	}
	if strings.HasPrefix(s, "-") {
		d.report(n, path, fmt.Sprintf("period must be greater than 0, got %q", s), periodHint)
		return
	}
	if s != "" && strings.Trim(s, "0123456789") == "" {
		secs, err := strconv.ParseInt(s, 10, 64)
		if err != nil || secs > math.MaxInt64/int64(time.Second) {
			d.report(n, path, fmt.Sprintf("period of %s seconds is too large", s), "")
			return
		}
		v.SetInt(secs * int64(time.Second))
		return
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.report(n, path, fmt.Sprintf("invalid period %q", s), periodHint)
		return
	}
	v.SetInt(int64(t))
}

// stringList decodes a string or a list of strings.
func (d *decoder) stringList(n *yaml.Node, v reflect.Value, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.Set(reflect.ValueOf(StringList{s}))
		}
	case yaml.SequenceNode:
		d.list(n, v, path)
	default:
		d.report(n, path, fmt.Sprintf("expected a string or a list of strings, got %s", describe(n)), "")
	}
}

// redacted reports whether a struct field holds a secret that output
// must never show.
func redacted(f reflect.StructField) bool {
	return f.Tag.Get("redact") == "true"
}

// redactedText replaces a secret in anything the config package prints.
const redactedText = "<redacted>"

// redactIn replaces every occurrence of secret (quoted or bare) in msg.
func redactIn(msg, secret string) string {
	if secret == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, strconv.Quote(secret), strconv.Quote(redactedText))
	return strings.ReplaceAll(msg, secret, redactedText)
}
