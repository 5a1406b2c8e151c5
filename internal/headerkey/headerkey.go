// Package headerkey puts HTTP header field names in canonical form
// without allocating, for the hot paths that look fields up by a name a
// client or a config spelled (net/http's CanonicalHeaderKey allocates
// whenever it changes the name).
package headerkey

import "net/textproto"

// Append appends the canonical form of name to dst, as
// textproto.CanonicalMIMEHeaderKey gives it for a name that is a valid
// token: the first letter and each letter after a hyphen upper case, the
// others lower case. Pass a stack buffer (buf[:0]) to stay off the heap.
func Append(dst []byte, name string) []byte {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst
}

// Values returns the values of the field name in h (a net/http header:
// canonical keys), looking name up as given and then in canonical form,
// so that a lower-case name finds its field. It returns h's own slice
// and does not allocate for names of up to 64 bytes.
func Values(h map[string][]string, name string) []string {
	if v, ok := h[name]; ok {
		return v
	}
	var buf [64]byte
	if len(name) > len(buf) {
		return h[textproto.CanonicalMIMEHeaderKey(name)]
	}
	// The canonical form, built on the stack: CanonicalMIMEHeaderKey
	// allocates whenever it changes the name, which it always does for a
	// lower-case one. A name that was canonical already is not looked up
	// twice (most callers spell it so, and ask for fields often absent).
	c := Append(buf[:0], name)
	if string(c) == name {
		return nil
	}
	return h[string(c)]
}

// Get returns the first value of the field name in h, "" when it has
// none; it looks name up as [Values] does.
func Get(h map[string][]string, name string) string {
	if v := Values(h, name); len(v) > 0 {
		return v[0]
	}
	return ""
}
