package config

import (
	"cmp"
	"slices"
	"strings"
)

// Diagnostic is one problem found in a configuration, located in the file
// it came from. Line and Col are 1-based; zero means unknown (for example
// for configs built from flags).
type Diagnostic struct {
	// File is the config file name as given to [Load] or [Parse]; empty
	// for configs that did not come from a file.
	File string
	// Line and Col locate the offending key or value.
	Line, Col int
	// Path is the key path of the offending value, for example
	// "listeners[1].address" or "upstreams.library.targets[0]".
	Path string
	// Msg says what is wrong, starting lowercase.
	Msg string
	// Hint, when set, says how to fix it.
	Hint string
}

// String formats d as "file:line:col: path: msg (hint: hint)". The location
// is shortened to "file" or omitted when unknown, the path is omitted when
// empty and the hint part when there is no hint.
func (d Diagnostic) String() string {
	var b strings.Builder
	loc := Pos{File: d.File, Line: d.Line, Col: d.Col}.String()
	if loc != "" {
		b.WriteString(loc)
		b.WriteString(": ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Msg)
	if d.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(d.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Diagnostics is a list of configuration problems. It implements error;
// [Load], [Parse], [FromFlags] and [Config.Validate] return it sorted by
// file, line and column, so callers can print it as is or inspect it with
// errors.As.
type Diagnostics []Diagnostic

// Error returns one diagnostic per line, without a trailing newline.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders ds by file, line and column; diagnostics at the same place
// keep the order they were found in.
func (ds Diagnostics) sort() {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Col, b.Col),
		)
	})
}

// err returns ds sorted as an error, or nil when ds is empty.
func (ds Diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	ds.sort()
	return ds
}
