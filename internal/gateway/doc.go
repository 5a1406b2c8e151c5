// Package gateway wires a validated config into one running gateway: the
// descriptor registry, upstream connections, the route table and protocol
// adapters of the current snapshot (rebuilt and swapped atomically on every
// descriptor change), and the listeners. It owns Start and Shutdown; cmd
// stays thin.
package gateway
