package transcoder

import (
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rosetta-gateway/rosetta/registry"
)

// TypeResolver resolves message and extension types from the snapshot
// first (the backends' own types, for google.protobuf.Any) and then from the
// types compiled into the gateway (google.rpc error details and the
// well-known types).
type TypeResolver struct {
	primary *protoregistry.Types
}

// NewTypeResolver returns the resolver of snapshot s (nil: global types
// only).
func NewTypeResolver(s *registry.Snapshot) *TypeResolver {
	r := &TypeResolver{}
	if s != nil {
		r.primary = s.Types
	}
	return r
}

// FindMessageByName implements protoregistry.MessageTypeResolver.
func (r *TypeResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if r.primary != nil {
		if mt, err := r.primary.FindMessageByName(name); err == nil {
			return mt, nil
		}
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

// FindMessageByURL implements protoregistry.MessageTypeResolver.
func (r *TypeResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if r.primary != nil {
		if mt, err := r.primary.FindMessageByURL(url); err == nil {
			return mt, nil
		}
	}
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

// FindExtensionByName implements protoregistry.ExtensionTypeResolver.
func (r *TypeResolver) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if r.primary != nil {
		if xt, err := r.primary.FindExtensionByName(field); err == nil {
			return xt, nil
		}
	}
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

// FindExtensionByNumber implements protoregistry.ExtensionTypeResolver.
func (r *TypeResolver) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	if r.primary != nil {
		if xt, err := r.primary.FindExtensionByNumber(message, field); err == nil {
			return xt, nil
		}
	}
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}
