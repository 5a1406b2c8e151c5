package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
)

// Normalized returns c as indented JSON, for golden tests and the admin
// API. Keys are the YAML keys; struct fields keep their declaration order
// and map keys are sorted, so equal configs give equal bytes. Durations are
// strings such as "30s"; sizes are byte counts. Empty strings, empty lists
// (unless an empty list means something of its own, as proxy-cache's
// key: [] does) and unset (nil) sections are left out, as are the unset
// fields of a route's retry override; File, Upstream.Name and Pos are not
// part of the schema and are left out too. Secrets (jwt-auth secrets, consumer keys,
// the Redis password) are shown as "<redacted>". Call it on a config from
// [Parse] or [FromFlags] to see every default.
func (c *Config) Normalized() ([]byte, error) {
	var raw bytes.Buffer
	if err := writeJSON(&raw, reflect.ValueOf(c).Elem()); err != nil {
		return nil, fmt.Errorf("normalize config: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("normalize config: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// omitted reports whether a field value is left out of normalized JSON.
func omitted(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return v.IsNil() || (v.Kind() != reflect.Pointer && v.Len() == 0)
	case reflect.String:
		return v.Len() == 0
	}
	return false
}

func writeJSON(b *bytes.Buffer, v reflect.Value) error {
	switch v.Type() {
	case durationType:
		return writeScalar(b, v.Interface().(Duration).String())
	case periodType:
		return writeScalar(b, v.Interface().(Period).String())
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("null")
			return nil
		}
		return writeJSON(b, v.Elem())
	case reflect.Struct:
		b.WriteByte('{')
		n := 0
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			switch v.Type().Field(f.index).Tag.Get("normalize") {
			case "omitzero":
				// Unset, and with no default here: a field of a route's
				// override, which inherits, or one that does not apply.
				if fv.IsZero() {
					continue
				}
			case "keepempty":
				// An empty list means something else than a missing one.
				if fv.Kind() == reflect.Slice && !fv.IsNil() {
					break
				}
				fallthrough
			default:
				if omitted(fv) {
					continue
				}
			}
			if n > 0 {
				b.WriteByte(',')
			}
			n++
			if err := writeScalar(b, f.name); err != nil {
				return err
			}
			b.WriteByte(':')
			if redacted(v.Type().Field(f.index)) {
				writeRedacted(b, fv)
				continue
			}
			if err := writeJSON(b, fv); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeScalar(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeJSON(b, v.MapIndex(reflect.ValueOf(k))); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case reflect.Slice:
		b.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, v.Index(i)); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return writeScalar(b, v.Interface())
	}
	return nil
}

func writeScalar(b *bytes.Buffer, x any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return err
	}
	// Encode ends every value with a newline; drop it.
	b.Truncate(b.Len() - 1)
	return nil
}

// writeRedacted writes a secret string, or a list of them, as
// "<redacted>" (one per element, so the count stays visible).
func writeRedacted(b *bytes.Buffer, v reflect.Value) {
	q := strconv.Quote(redactedText)
	if v.Kind() != reflect.Slice {
		b.WriteString(q)
		return
	}
	b.WriteByte('[')
	for i := range v.Len() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(q)
	}
	b.WriteByte(']')
}
