package transcoder

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
)

var reLineCol = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// errorFieldPath finds the JSON path ("nested.n", "nesteds[2].name",
// "labels.k") of the value at the position a protojson error names, so a
// 400 can say exactly which field is wrong. It returns "" when the error
// has no position or the position is not inside a value.
func errorFieldPath(body []byte, errMsg string) string {
	m := reLineCol.FindStringSubmatch(errMsg)
	if m == nil {
		return ""
	}
	line, _ := strconv.Atoi(m[1])
	col, _ := strconv.Atoi(m[2])
	off := lineColOffset(body, line, col)
	if off < 0 {
		return ""
	}
	return jsonPathAt(body, int64(off))
}

// lineColOffset converts a 1-based line and column (in bytes, as
// protojson reports them) to a byte offset.
func lineColOffset(b []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	off += col - 1
	if off > len(b) {
		return -1
	}
	return off
}

type pathFrame struct {
	array   bool
	index   int
	key     string
	wantKey bool
}

// jsonPathAt returns the path of the value whose token spans off.
func jsonPathAt(body []byte, off int64) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []pathFrame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				b.WriteByte('[')
				b.WriteString(strconv.Itoa(f.index))
				b.WriteByte(']')
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ""
			}
			return path()
		}
		end := dec.InputOffset()
		top := len(stack) - 1
		isEnd := tok == json.Delim('}') || tok == json.Delim(']')
		if top >= 0 && !stack[top].array && stack[top].wantKey && !isEnd {
			stack[top].key, _ = tok.(string)
			stack[top].wantKey = false
			continue
		}
		if end > off && !isEnd {
			return path()
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, pathFrame{wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, pathFrame{array: true, index: 0})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:top]
			top--
		}
		// A value ended: advance the enclosing container.
		if top >= 0 {
			if stack[top].array {
				stack[top].index++
			} else {
				stack[top].wantKey = true
			}
		}
	}
}
