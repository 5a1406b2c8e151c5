// Package keyauth is the key-auth plugin: it authenticates a call by an
// API key that belongs to one of the config's consumers, read from a
// request header (default "apikey") and, when configured, a query
// parameter. Keys are held only as SHA-256 hashes. Importing the package
// registers the plugin under the name "key-auth".
//
// It does not issue or rotate keys, rate-limit, or remove the key from
// what the upstream receives.
package keyauth
