package main

// issue12 prints the target of issue 12 (the cost of metrics on the
// gRPC relay) when its row ran.
func (r *results) issue12(w func(string, ...any)) {
	if r.cell("grpc-unary-metrics", peerRosetta) == nil {
		return
	}
	w("\n## Target (issue 12: metrics)\n\n")
	w("Each ratio is taken within a round, median of rounds.\n\n")
	r.target(w, "gRPC unary pass-through (frame relay), Rosetta CPU/call with metrics on ÷ metrics off",
		"grpc-unary-metrics", peerRosetta, "grpc-unary", peerRosetta, 1.05, false)
}
