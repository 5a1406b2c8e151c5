// Package wirejson transcodes between the proto3 JSON mapping and the
// protobuf wire format directly, without building messages.
//
// A [Plan] is compiled once per message descriptor (per descriptor
// snapshot) with [Compile]; it holds everything about the message that does
// not change per call: field names in both JSON forms, wire tags, enum
// names, nested plans (recursive types share plans). [Plan.AppendJSON]
// renders wire bytes as JSON and [Plan.AppendProto] encodes JSON as wire
// bytes. Both follow google.golang.org/protobuf/encoding/protojson exactly
// (field order, number and string forms, well-known types, what is
// accepted and rejected, and the wording of errors), which a differential
// fuzz test checks; neither uses reflection on messages nor allocates per
// scalar field.
//
// It owns the JSON⇄wire mapping only: HTTP rules, path and query binding
// and error rendering belong to package transcoder.
package wirejson
