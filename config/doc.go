// Package config owns Rosetta's configuration: the rosetta.yaml schema
// ([Config] and the types it holds), strict decoding with exact file
// positions, ${VAR} and ${VAR:-default} expansion in scalar values,
// defaults, and validation that reports every problem at once as
// [Diagnostics], each located as file:line:col with its key path. It also
// builds the zero-config configuration of --listen/--upstream flags
// ([FromFlags]) and renders a config as deterministic JSON
// ([Config.Normalized]).
//
// Entry points are [Load] for a file, [Parse] for bytes already read, and
// [FromFlags]. A Config they return is valid, has every default filled in
// and has absolute file paths; other packages treat it as read-only. Its
// Warnings list settings that are accepted but have no effect.
//
// It does not watch files or hot-reload (a watcher that calls [Load] and
// keeps the old config when the new one fails comes later, in
// internal/gateway), open listeners, dial upstreams or read descriptor
// contents: it checks only that the files it names exist.
package config
