package bindings

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/resiliency"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// probeTimeout bounds the subscription question asked of the app.
const probeTimeout = 5 * time.Second

// maxAppResponse bounds how much of the app's answer to an event is read.
const maxAppResponse = 16 << 20

// run is one input binding's goroutine: wait for the app, ask whether it
// subscribes, then read until ctx ends.
func (b *Block) run(ctx context.Context, in *input) {
	log := b.log.With("binding", in.name)
	if err := b.app.WaitReady(ctx); err != nil {
		return
	}
	ok, err := b.subscribed(ctx, in)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		log.Error("input binding not started: could not ask the app whether it subscribes", "error", err)
		return
	case !ok:
		log.Info("app has not subscribed to input binding; not reading it", "route", in.route)
		return
	}
	log.Info("reading input binding", "route", in.route)
	err = in.binding.Read(ctx, func(hctx context.Context, e *cbindings.Event) ([]byte, error) {
		return b.deliver(ctx, hctx, in, e)
	})
	if err != nil && ctx.Err() == nil {
		log.Error("input binding stopped reading", "error", err)
	}
}

// subscribed reports whether the app wants in's events: always when the
// component's direction names input; for an HTTP app when OPTIONS /{route}
// answers 2xx or 405; for a gRPC app when ListInputBindings lists it.
func (b *Block) subscribed(ctx context.Context, in *input) (bool, error) {
	if in.explicit {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if b.app.GRPC != nil {
		subs, err := b.grpcSubscriptions(ctx)
		return subs[in.name], err
	}
	resp, err := b.app.HTTP.Do(ctx, http.MethodOptions, in.route, http.Header{"Content-Type": {"application/json"}}, nil)
	if err != nil {
		return false, fmt.Errorf("OPTIONS %s: %w", in.route, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAppResponse))
	resp.Body.Close()
	return resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusMethodNotAllowed, nil
}

// grpcSubscriptions asks a gRPC app which input bindings it wants; the
// first answer is kept. An app that does not implement ListInputBindings
// wants none; a failed call is not kept, so the next binding asks again.
func (b *Block) grpcSubscriptions(ctx context.Context) (map[string]bool, error) {
	b.grpcSubsMu.Lock()
	defer b.grpcSubsMu.Unlock()
	if b.grpcSubs != nil {
		return b.grpcSubs, nil
	}
	resp, err := b.app.GRPC.Callback.ListInputBindings(ctx, &emptypb.Empty{})
	if status.Code(err) == codes.Unimplemented {
		b.log.Info("the app does not implement ListInputBindings; no input bindings will be delivered")
		b.grpcSubs = map[string]bool{}
		return b.grpcSubs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ListInputBindings: %w", err)
	}
	subs := map[string]bool{}
	for _, n := range resp.GetBindings() {
		subs[n] = true
	}
	b.grpcSubs = subs
	return subs, nil
}

// deliver hands one event to the app and returns the app's answer, under
// the binding's inbound resiliency policy (a delivery the app did not
// accept is tried again as it allows). An error (transport failure,
// non-2xx status, gRPC error) tells the component the event was not
// accepted. runCtx is the block's lifetime; hctx the
// component's context for this event.
func (b *Block) deliver(runCtx, hctx context.Context, in *input, e *cbindings.Event) ([]byte, error) {
	ctx, cancel := context.WithCancel(hctx)
	defer cancel()
	stop := context.AfterFunc(runCtx, cancel)
	defer stop()
	// Hold the event while the app fails its health checks.
	if err := b.app.WaitReady(ctx); err != nil {
		return nil, err
	}
	// The delivery span continues the trace the event carries.
	ctx, span := tracing.StartInputBinding(tracing.FromContext(runCtx).ContextWith(ctx), in.name, metaValue(e.Metadata, tracing.TraceParentKey), metaValue(e.Metadata, tracing.TraceStateKey))
	var answer []byte
	var start time.Time
	if b.obs.Input != nil {
		start = time.Now()
	}
	err := b.res.ComponentInbound(in.name, resiliency.Binding).Run(ctx, func(ctx context.Context) (err error) {
		if b.app.GRPC != nil {
			answer, err = b.deliverGRPC(runCtx, ctx, in, e)
		} else {
			answer, err = b.deliverHTTP(runCtx, ctx, in, e)
		}
		return err
	})
	tracing.End(span, err)
	if b.obs.Input != nil {
		b.obs.Input(in.name, err == nil, time.Since(start))
	}
	return answer, err
}

// metaValue is md[key], else the value of a key that differs only in case
// (brokers pass header names as they were set).
func metaValue(md map[string]string, key string) string {
	if v, ok := md[key]; ok {
		return v
	}
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

func (b *Block) deliverHTTP(runCtx, ctx context.Context, in *input, e *cbindings.Event) ([]byte, error) {
	h := make(http.Header, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		if httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v) {
			h.Set(k, v)
		} else {
			b.log.Debug("event metadata entry is not a valid HTTP header; not sent to the app", "binding", in.name, "key", k)
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	resp, err := b.app.HTTP.Do(ctx, http.MethodPost, in.route, h, bytesReader(e.Data))
	if err != nil {
		return nil, fmt.Errorf("error invoking app: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAppResponse))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("app answered POST %s with status %d: %s", in.route, resp.StatusCode, truncate(body, 256))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the app's answer: %w", err)
	}
	if r, ok := parseAppResponse(body); ok {
		b.fanOut(runCtx, ctx, in.name, r)
	}
	return body, nil
}

func (b *Block) deliverGRPC(runCtx, ctx context.Context, in *input, e *cbindings.Event) ([]byte, error) {
	for _, k := range []string{"traceparent", "tracestate"} {
		if v, ok := e.Metadata[k]; ok && v != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, k, v)
		}
	}
	resp, err := b.app.GRPC.Callback.OnBindingEvent(ctx, &runtimev1.BindingEventRequest{Name: in.name, Data: e.Data, Metadata: e.Metadata})
	if err != nil {
		return nil, fmt.Errorf("error invoking app: %w", err)
	}
	if r, ok := grpcAppResponse(resp); ok {
		b.fanOut(runCtx, ctx, in.name, r)
	}
	return resp.GetData(), nil
}

// bytesReader is the request body for event data; none when empty.
func bytesReader(b []byte) io.Reader {
	if len(b) == 0 {
		return http.NoBody
	}
	return bytes.NewReader(b)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(slices.Clip(b[:n]), "..."...)
	}
	return b
}
