package bindings

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/resiliency"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// InvokeRequest is one output binding call, as both transports decode it.
type InvokeRequest struct {
	// Name is the binding's component name.
	Name      string
	Operation string
	Data      []byte
	Metadata  map[string]string
}

// Invoke calls the output binding req.Name. Like daprd it may return a
// response together with an error: the transports still pass the
// response's metadata to the caller (bindings.http reports the status of a
// failed call that way). Every failure is ERR_INVOKE_OUTPUT_BINDING.
func (b *Block) Invoke(ctx context.Context, req InvokeRequest) (_ *cbindings.InvokeResponse, err error) {
	ctx, span := tracing.StartBinding(ctx, req.Name, req.Operation)
	defer func() { tracing.End(span, err) }()
	fail := func(err error) error {
		return apierr.InvokeOutputBinding.Wrap(err, "error invoking output binding %s", req.Name)
	}
	if req.Operation == "" {
		return nil, fail(errors.New("operation field is missing from request"))
	}
	o, ok := b.outputs.Get(req.Name)
	if !ok {
		return nil, fail(errors.New("couldn't find output binding " + req.Name))
	}
	op := cbindings.Operation(req.Operation)
	if !slices.Contains(o.ops, op) {
		names := make([]string, len(o.ops))
		for i, s := range o.ops {
			names[i] = string(s)
		}
		return nil, fail(errors.New("binding " + req.Name + " does not support operation " + req.Operation + ". supported operations:" + strings.Join(names, " ")))
	}
	md := req.Metadata
	if md == nil {
		md = map[string]string{}
	}
	// The binding's span is the parent of what the component calls (an
	// HTTP endpoint receives it as traceparent), as daprd passes its span.
	tracing.InjectMap(ctx, md)
	var resp *cbindings.InvokeResponse
	var start time.Time
	if b.obs.Output != nil {
		start = time.Now()
	}
	err = b.res.ComponentOutbound(req.Name, resiliency.Binding).Run(ctx, func(ctx context.Context) (err error) {
		resp, err = o.Invoke(ctx, &cbindings.InvokeRequest{Operation: op, Data: req.Data, Metadata: md})
		return err
	})
	if b.obs.Output != nil {
		b.obs.Output(req.Name, req.Operation, err == nil, time.Since(start))
	}
	if err != nil {
		return resp, fail(err)
	}
	return resp, nil
}
