package openapi

import (
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// internalComment matches the "(-- ... --)" blocks that API style guides
// use for comments meant for the API's authors, not its users.
var internalComment = regexp.MustCompile(`(?s)\(--.*?--\)`)

// comments returns d's leading comment (else its trailing one) from the
// source info of its file, cleaned up: the one space after each "//"
// dropped, internal "(-- --)" blocks removed, outer blank lines trimmed.
// It returns "" when the descriptors carry no source info.
func comments(d protoreflect.Descriptor) string {
	f := d.ParentFile()
	if f == nil {
		return ""
	}
	loc := f.SourceLocations().ByDescriptor(d)
	text := loc.LeadingComments
	if strings.TrimSpace(text) == "" {
		text = loc.TrailingComments
	}
	if strings.TrimSpace(text) == "" {
		return ""
	}
	text = internalComment.ReplaceAllString(text, "")
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(strings.TrimPrefix(l, " "), " \t\r")
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// summary returns the first sentence of a comment's first paragraph, on
// one line.
func summary(text string) string {
	para, _, _ := strings.Cut(text, "\n\n")
	para = strings.Join(strings.Fields(para), " ")
	if i := strings.Index(para, ". "); i >= 0 {
		para = para[:i+1]
	}
	return para
}

// deprecated reports whether a descriptor's options set deprecated = true.
// Options may be the generated descriptorpb types or dynamic messages.
func deprecated(opts proto.Message) bool {
	if opts == nil {
		return false
	}
	m := opts.ProtoReflect()
	if !m.IsValid() {
		return false
	}
	fd := m.Descriptor().Fields().ByName("deprecated")
	return fd != nil && fd.Kind() == protoreflect.BoolKind && m.Get(fd).Bool()
}

// Comments returns d's proto comment as documentation text: its leading
// comment (else its trailing one), without internal "(-- --)" blocks; ""
// when the descriptors carry no source info. The developer portal shows
// it.
func Comments(d protoreflect.Descriptor) string { return comments(d) }
