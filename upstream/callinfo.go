package upstream

import "context"

// CallInfoFrom returns the CallInfo that [WithCallInfo] put in ctx, or
// nil. Layers in front of the upstream read it (the response cache) and
// may fill its outcome fields.
func CallInfoFrom(ctx context.Context) *CallInfo { return callInfoFrom(ctx) }
