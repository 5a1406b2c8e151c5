package config_test

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/config"
)

func ExampleParse() {
	yaml := `listeners:
  - adress: ":8080"
upstreams:
  library:
    targets: "${LIBRARY_ADDR}"
    timeout: 5 sec
`
	env := func(string) (string, bool) { return "", false }
	_, err := config.Parse("rosetta.yaml", []byte(yaml), env)
	fmt.Println(err)
	// Output:
	// rosetta.yaml:2:5: listeners[0].adress: unknown key "adress" (known: address, http3, idle_timeout, max_body_bytes, max_concurrent_streams, max_header_bytes, max_header_count, max_uri_bytes, read_header_timeout, read_timeout, tls, write_timeout) (hint: did you mean "address"?)
	// rosetta.yaml:2:5: listeners[0].address: address is required (hint: write host:port, e.g. "127.0.0.1:8080" or ":8080")
	// rosetta.yaml:5:14: upstreams.library.targets: expected a list, got "${LIBRARY_ADDR}" (hint: write a list, e.g. ["${LIBRARY_ADDR}"])
	// rosetta.yaml:6:14: upstreams.library.timeout: invalid duration "5 sec" (hint: use a number with a unit, e.g. "5s", "250ms", "1m30s")
}

func ExampleFromFlags() {
	c, err := config.FromFlags(":8080", []string{"127.0.0.1:9000", "library=10.0.0.5:9000,10.0.0.6:9000"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"127-0-0-1-9000", "library"} {
		u := c.Upstreams[name]
		fmt.Println(u.Name, u.Addresses(), u.Descriptors.UseReflection())
	}
	// Output:
	// 127-0-0-1-9000 [127.0.0.1:9000] true
	// library [10.0.0.5:9000 10.0.0.6:9000] true
}
