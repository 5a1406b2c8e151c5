package analytics

import (
	"fmt"
	"strconv"
	"strings"
)

// dims is the dimension tuple of a cell. The field order is dimNames'.
type dims struct {
	api, route, method, protocol, consumer, status string
}

// dimNames are the dimension names of [Query.GroupBy] and [Query.Filter].
var dimNames = [...]string{"api", "route", "method", "protocol", "consumer", "status_class"}

func (d *dims) get(i int) string {
	switch i {
	case 0:
		return d.api
	case 1:
		return d.route
	case 2:
		return d.method
	case 3:
		return d.protocol
	case 4:
		return d.consumer
	default:
		return d.status
	}
}

func (d *dims) set(i int, v string) {
	switch i {
	case 0:
		d.api = v
	case 1:
		d.route = v
	case 2:
		d.method = v
	case 3:
		d.protocol = v
	case 4:
		d.consumer = v
	default:
		d.status = v
	}
}

// dimIndex returns the index of a dimension name in dimNames.
func dimIndex(name string) (int, error) {
	for i, n := range dimNames {
		if n == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown dimension %q (known: %s)", name, strings.Join(dimNames[:], ", "))
}

// Other is the value that replaces the api, route, method and consumer of
// a call once a minute holds [Options.MaxKeysPerMinute] distinct
// dimension tuples. The call is still counted, under Other.
const Other = "_other"

var (
	knownProtocols = []string{"rest", "grpc", "grpc_web", "connect", "websocket", "sse", "http"}
	knownStatus    = []string{"2xx", "3xx", "4xx", "5xx", "1xx"}
)

// collapse returns the overflow tuple of d: the high-cardinality values
// become [Other]; protocol and status class stay when they are among the
// known values, so the overflow tuples of one minute stay few (≤ 48).
func collapse(d dims) dims {
	o := dims{api: Other, route: Other, method: Other, consumer: Other, protocol: Other, status: Other}
	for _, p := range knownProtocols {
		if d.protocol == p {
			o.protocol = p
		}
	}
	for _, s := range knownStatus {
		if d.status == s {
			o.status = s
		}
	}
	return o
}

// appendDims encodes d unambiguously for a Redis hash field: each value
// as its decimal byte length, a colon and the bytes, in dimNames order.
// Any byte may appear in a value. The metric name follows the tuple.
func appendDims(b []byte, d *dims) []byte {
	for i := range dimNames {
		v := d.get(i)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return b
}

// parseDims decodes the tuple at the start of s, returning it and the
// length of its encoding. The values share s's memory.
func parseDims(s string) (d dims, n int, ok bool) {
	for i := range dimNames {
		c := strings.IndexByte(s[n:], ':')
		if c <= 0 || c > 10 {
			return d, 0, false
		}
		l, err := strconv.Atoi(s[n : n+c])
		if err != nil || l < 0 || n+c+1+l > len(s) {
			return d, 0, false
		}
		n += c + 1
		d.set(i, s[n:n+l])
		n += l
	}
	return d, n, true
}
