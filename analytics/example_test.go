package analytics_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rosetta-gateway/rosetta/analytics"
)

func Example() {
	now := time.Date(2025, 3, 10, 10, 58, 30, 0, time.UTC)
	a := analytics.New(analytics.Options{Now: func() time.Time { return now }}) // memory only
	defer a.Close(context.Background())

	for i, consumer := range []string{"alice", "alice", "bob"} {
		a.Record(&analytics.Record{
			Time:        now,
			API:         "library.v1.LibraryService",
			Method:      "/library.v1.LibraryService/GetBook",
			Protocol:    "rest",
			Consumer:    consumer,
			StatusClass: "2xx",
			Duration:    time.Duration(i+1) * time.Millisecond,
			BytesIn:     100,
			BytesOut:    1000,
		})
	}

	from, to, step, _ := analytics.Window("1h", now)
	res, _ := a.Query(context.Background(), analytics.Query{From: from, To: to, Step: step, GroupBy: []string{"consumer"}})
	for _, s := range res.Series {
		fmt.Printf("%s: %d calls, %d points of %s\n", s.Labels["consumer"], s.Totals.Calls, len(s.Points), res.Step)
	}

	usage, _ := a.Usage(context.Background(), analytics.UsageQuery{From: from, To: to})
	_ = usage.WriteCSV(os.Stdout)
	// Output:
	// alice: 2 calls, 60 points of 1m0s
	// bob: 1 calls, 60 points of 1m0s
	// consumer,api,method,status_class,calls,bytes_in,bytes_out
	// alice,library.v1.LibraryService,/library.v1.LibraryService/GetBook,2xx,2,200,2000
	// bob,library.v1.LibraryService,/library.v1.LibraryService/GetBook,2xx,1,100,1000
}
