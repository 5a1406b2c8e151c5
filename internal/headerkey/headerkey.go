// Package headerkey puts HTTP header field names in canonical form
// without allocating, for the hot paths that look fields up by a name a
// client or a config spelled (net/http's CanonicalHeaderKey allocates
// whenever it changes the name).
package headerkey

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
