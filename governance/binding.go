package governance

import (
	"fmt"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/rosetta-gateway/rosetta/config"
	"github.com/rosetta-gateway/rosetta/router"
)

// httpBindings applies [RuleHTTPBinding]: every method has an HTTP
// binding of its own (a google.api.http option or an http rule, valid
// enough that the route table keeps it), or a transcoding.default_bound
// selector says its default binding is deliberate. Methods on retired
// routes are exempt. When no method of a service (of two or more) has
// one, the service gets one finding instead of one per method.
func (c *checker) httpBindings() {
	cfg := c.in.Config
	// The table the gateway builds, without default bindings: what is
	// left is what the .proto and the config bind.
	table, _ := router.Build(c.in.Snapshot, router.Params{Rules: cfg.HTTP.Rules, Routes: cfg.Routes})
	rules := map[string]*config.HTTPRule{}
	for i := range cfg.HTTP.Rules {
		r := &cfg.HTTP.Rules[i]
		rules[r.Selector] = r // the last rule for a method wins, as in the router
	}
	for _, svc := range c.services() {
		ms := svc.Desc.Methods()
		var unbound []protoreflect.MethodDescriptor
		for i := 0; i < ms.Len(); i++ {
			md := ms.Get(i)
			name := md.FullName()
			if len(table.RouteFor(name)) > 0 || c.defaultBound(name) || c.retired(name) {
				continue
			}
			if r := rules[string(name)]; r != nil {
				c.add(Finding{
					Rule: RuleHTTPBinding, Kind: KindMethod, Subject: string(name), Pos: r.Pos,
					Message: "its http rule is invalid, so it has no REST route",
					Fix:     "fix the rule: `rosetta routes` prints what is wrong with it",
				})
				continue
			}
			if annotated(md) {
				c.add(Finding{
					Rule: RuleHTTPBinding, Kind: KindMethod, Subject: string(name),
					Message: "its google.api.http option is invalid, so it has no REST route",
					Fix:     "fix the option, or replace it with an http rule: `rosetta routes` prints what is wrong with it",
				})
				continue
			}
			unbound = append(unbound, md)
		}
		if n := len(unbound); n > 1 && n == ms.Len() {
			c.add(Finding{
				Rule: RuleHTTPBinding, Kind: KindService, Subject: string(svc.Desc.FullName()),
				Message: c.unboundMessage(fmt.Sprintf("none of its %d methods has an HTTP binding", n),
					fmt.Sprintf("POST /%s/{method}", svc.Desc.FullName()), "them"),
				Fix: fmt.Sprintf("add google.api.http options to its methods or http rules for them, or add %q to transcoding.default_bound if the default bindings are deliberate",
					string(svc.Desc.FullName())+".*"),
			})
			continue
		}
		for _, md := range unbound {
			c.add(Finding{
				Rule: RuleHTTPBinding, Kind: KindMethod, Subject: string(md.FullName()),
				Message: c.unboundMessage("no HTTP binding",
					fmt.Sprintf("POST /%s/%s", md.Parent().FullName(), md.Name()), "it"),
				Fix: fmt.Sprintf("add a google.api.http option to the method or an http rule for it, or add %q to transcoding.default_bound if the default binding is deliberate",
					string(md.FullName())),
			})
		}
	}
}

// unboundMessage completes what of methods without a binding: how REST
// clients reach them (by the default binding path, or not at all when
// default bindings are off); pronoun is "it" or "them".
func (c *checker) unboundMessage(what, path, pronoun string) string {
	if !c.in.Config.Transcoding.DefaultBindingsEnabled() {
		return what + ", and transcoding.default_bindings is false: REST clients cannot call " + pronoun
	}
	if pronoun == "it" {
		return what + ": REST clients reach it only by its default binding " + path
	}
	return what + ": REST clients reach them only by their default bindings " + path
}

// defaultBound reports whether a transcoding.default_bound selector
// covers the method fullName.
func (c *checker) defaultBound(fullName protoreflect.FullName) bool {
	for _, s := range c.in.Config.Transcoding.DefaultBound {
		if config.Selects(s, string(fullName)) {
			return true
		}
	}
	return false
}

// httpTypes resolves the google.api.http extension when options are
// decoded again.
var httpTypes = func() *protoregistry.Types {
	t := new(protoregistry.Types)
	if err := t.RegisterExtension(annotations.E_Http); err != nil {
		panic(err)
	}
	return t
}()

// annotated reports whether md has a google.api.http option. Descriptors
// loaded at run time (reflection, descriptor sets) carry options as
// unknown fields or dynamic messages, so the options are encoded and
// decoded again with the generated extension registered, as the router
// reads them.
func annotated(md protoreflect.MethodDescriptor) bool {
	opts := md.Options()
	if opts == nil {
		return false
	}
	raw, err := proto.Marshal(opts)
	if err != nil || len(raw) == 0 {
		return false
	}
	var mo descriptorpb.MethodOptions
	if err := (proto.UnmarshalOptions{Resolver: httpTypes}).Unmarshal(raw, &mo); err != nil {
		// The router reports an option it cannot decode; count it as
		// declared, so that the finding says it is invalid.
		return true
	}
	return proto.HasExtension(&mo, annotations.E_Http)
}
