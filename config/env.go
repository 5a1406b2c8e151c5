package config

import (
	"fmt"
	"strings"
)

// expandProblem is one failed expansion in a scalar.
type expandProblem struct {
	msg, hint string
}

// expandEnv expands ${VAR} and ${VAR:-default} in s; "$$" is a literal
// "$", and a "$" followed by anything else is kept as is. ${VAR:-default}
// uses the default when VAR is unset or empty, as a POSIX shell does; a
// plain ${VAR} that is set but empty expands to "". The default is taken
// literally (no nested expansion) up to the first "}".
//
// Expansion runs on one scalar value at a time, after YAML parsing, so a
// variable's value can never change the structure of the document.
func expandEnv(s string, lookup func(string) (string, bool)) (string, []expandProblem) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var (
		b        strings.Builder
		problems []expandProblem
	)
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
			continue
		case '{':
		default:
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			problems = append(problems, expandProblem{
				msg:  fmt.Sprintf("unterminated ${ in %q", s),
				hint: `close it with "}" or write "$$" for a literal "$"`,
			})
			b.WriteString(s[i:])
			break
		}
		expr := s[i+2 : i+2+end]
		i += 2 + end + 1
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			problems = append(problems, expandProblem{
				msg:  fmt.Sprintf("invalid environment variable name %q in ${%s}", name, expr),
				hint: `names are letters, digits and "_", not starting with a digit; write "$$" for a literal "$"`,
			})
			continue
		}
		val, ok := "", false
		if lookup != nil {
			val, ok = lookup(name)
		}
		switch {
		case hasDef && val == "":
			b.WriteString(def)
		case ok:
			b.WriteString(val)
		default:
			problems = append(problems, expandProblem{
				msg:  fmt.Sprintf("environment variable %q is not set", name),
				hint: fmt.Sprintf("export it or write ${%s:-default}", name),
			})
		}
	}
	return b.String(), problems
}

// validEnvName reports whether name is a portable environment variable
// name: [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
