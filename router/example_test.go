package router_test

import (
	"fmt"

	"github.com/rosetta-gateway/rosetta/router"
)

func ExampleParseTemplate() {
	t, err := router.ParseTemplate("/v1/{name=shelves/*}/books/{book.id=*}:publish")
	if err != nil {
		panic(err)
	}
	fmt.Println(t, t.Vars(), t.Verb())

	_, err = router.ParseTemplate("/v1/{name=shelves/*")
	fmt.Println(err)
	// Output:
	// /v1/{name=shelves/*}/books/{book.id}:publish [name book.id] publish
	// parse "/v1/{name=shelves/*": missing "}" at offset 19
}
