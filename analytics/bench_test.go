package analytics

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRecord measures the hot path. same_key is one tuple from all
// goroutines (0 allocs: the cell exists); keys_1000 spreads calls over
// 1000 tuples.
func BenchmarkRecord(b *testing.B) {
	now := time.Date(2025, 3, 10, 10, 58, 30, 0, time.UTC)
	b.Run("same_key", func(b *testing.B) {
		a := New(Options{FlushInterval: -1, Now: func() time.Time { return now }})
		defer a.Close(b.Context())
		r := Record{Time: now, API: "library.v1.LibraryService", Route: "/v1/books/{id}", Method: "/library.v1.LibraryService/GetBook",
			Protocol: "rest", Consumer: "alice", StatusClass: "2xx", Duration: 3 * time.Millisecond, BytesIn: 120, BytesOut: 2048}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := r
			for pb.Next() {
				a.Record(&r)
			}
		})
	})
	b.Run("keys_1000", func(b *testing.B) {
		a := New(Options{FlushInterval: -1, Now: func() time.Time { return now }})
		defer a.Close(b.Context())
		recs := make([]Record, 1000)
		for i := range recs {
			recs[i] = Record{Time: now, API: "library.v1.LibraryService", Method: fmt.Sprintf("/library.v1.LibraryService/M%d", i%50),
				Protocol: "grpc", Consumer: fmt.Sprintf("consumer-%d", i/50), StatusClass: "2xx", Duration: time.Duration(i) * time.Microsecond}
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				a.Record(&recs[i%len(recs)])
				i++
			}
		})
	})
}
