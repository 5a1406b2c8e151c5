// Package connect serves the Connect protocol: unary calls over POST and
// (for side-effect-free methods) GET, and enveloped streams of every kind,
// with the proto and JSON codecs and gzip. It routes by the
// "/pkg.Service/Method" path and answers errors in Connect's JSON shape.
package connect
