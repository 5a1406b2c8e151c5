package h2

// Values returns the values of every field named name (lower case), in
// order; nil when there is none. Unlike Get it allocates the slice.
func (h *RequestHead) Values(name string) []string {
	var out []string
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			out = append(out, h.Fields[i].Value)
		}
	}
	return out
}
