package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// eventTrace is the trace context an event's envelope carries: the
// producer span's (ctx) when tracing is on, else a child of the caller's
// traceparent (or a new trace when it is absent or malformed; its
// tracestate then goes too).
func eventTrace(ctx context.Context, parent, state string) (string, string) {
	if tp, ts, ok := tracing.TraceContext(ctx); ok {
		return tp, ts
	}
	if _, _, ok := parseTraceParent(parent); !ok {
		state = "" // belongs to a context that is not continued
	}
	return childTraceParent(parent), state
}

// childTraceParent returns the W3C traceparent of a new span for one
// published event: a child of parent (same trace id and flags, a new span
// id) when parent is a valid traceparent, else the root of a new, not
// sampled trace. daprd starts a producer span per event the same way, so
// the envelope's traceid/traceparent are never empty.
func childTraceParent(parent string) string {
	var span [8]byte
	_, _ = rand.Read(span[:])
	if traceID, flags, ok := parseTraceParent(parent); ok {
		return "00-" + traceID + "-" + hex.EncodeToString(span[:]) + "-" + flags
	}
	var trace [16]byte
	_, _ = rand.Read(trace[:])
	return "00-" + hex.EncodeToString(trace[:]) + "-" + hex.EncodeToString(span[:]) + "-00"
}

// parseTraceParent returns the trace id and flags of a version-00
// traceparent ("00-<32 hex>-<16 hex>-<2 hex>") whose ids are not all zero.
func parseTraceParent(tp string) (traceID, flags string, ok bool) {
	parts := strings.Split(strings.TrimSpace(tp), "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return "", "", false
	}
	for _, p := range parts[1:] {
		if !isLowerHex(p) {
			return "", "", false
		}
	}
	if strings.Trim(parts[1], "0") == "" || strings.Trim(parts[2], "0") == "" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// deliverTraced delivers ev inside daprd's "pubsub/<topic>" span, which
// continues the trace the event carries; the receiver gets that span as
// its parent (the app channel sends the span in the context). A DROP is
// the receiver's decision, not a failure of the span.
func (r *running) deliverTraced(ctx context.Context, log *slog.Logger, s *subscription, ev *event, path string) error {
	parent, state := ev.traceContext()
	ctx, span := tracing.StartDelivery(ctx, parent, state, s.pubsubName, s.topic)
	err := r.target.deliver(ctx, log, ev, path)
	if errors.Is(err, errDropped) {
		tracing.End(span, nil)
	} else {
		tracing.End(span, err)
	}
	return err
}

// startBulkSpans starts a delivery span ("pubsub/<topic>") for each entry
// of a bulk request, each continuing the trace of its own event, as daprd
// does. The request is one call to the app, so it carries the first
// entry's span as its parent. Without tracing there are no spans.
func startBulkSpans(ctx context.Context, g *bulkRequest) (context.Context, []trace.Span) {
	if tracing.FromContext(ctx) == nil || len(g.entries) == 0 {
		return ctx, nil
	}
	spans := make([]trace.Span, len(g.entries))
	out := ctx
	for i, e := range g.entries {
		parent, state := e.ev.traceContext()
		ectx, span := tracing.StartDelivery(ctx, parent, state, g.pubsub, g.topic)
		if i == 0 {
			out = ectx
		}
		spans[i] = span
	}
	return out, spans
}

// errEntryRetry marks the span of a bulk entry the app asked to retry.
var errEntryRetry = errors.New("the app asked for the entry to be retried")

// endBulkSpans ends the entries' spans with their outcomes: the batch's
// error, RETRY as a failure, SUCCESS and DROP (the app's decision) as
// successes.
func endBulkSpans(spans []trace.Span, outs []outcome, err error) {
	for j, span := range spans {
		switch {
		case err != nil:
			tracing.End(span, err)
		case j >= len(outs) || outs[j] == outcomeRetry:
			tracing.End(span, errEntryRetry)
		default:
			tracing.End(span, nil)
		}
	}
}
