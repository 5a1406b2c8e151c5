// Package registry owns the gateway's descriptors: it loads them from gRPC
// server reflection, descriptor-set files and .proto sources, merges them
// into one immutable, versioned [Snapshot], reports conflicts and schema
// drift, and refreshes them while the gateway runs.
//
// It does not route requests or talk to backends beyond reflection.
package registry
