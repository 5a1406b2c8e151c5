package testkit

import "sync"

// Repeat calls f again and again in n goroutines, until the stop function
// it returns is called or f returns false (which ends that goroutine
// only); stop then waits for the calls still running. It is the load of
// tests that do something while clients keep calling.
func Repeat(n int, f func() bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if !f() {
					return
				}
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
