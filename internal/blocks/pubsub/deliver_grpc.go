package pubsub

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// outgoingMetadata attaches message metadata to a call to a gRPC app, as
// daprd (keys lower-cased, Content-Type and Content-Length left out), plus
// the event's trace context. Keys gRPC refuses are skipped rather than
// failing the call.
func outgoingMetadata(ctx context.Context, md map[string]string, ev *event) context.Context {
	out := metadata.MD{}
	for k, v := range md {
		k = strings.ToLower(k)
		if k == "content-type" || k == "content-length" || !validGRPCKey(k) || strings.HasSuffix(k, "-bin") {
			continue
		}
		out.Append(k, v)
	}
	if ev != nil {
		parent, state := ev.traceContext()
		if parent != "" && len(out.Get("traceparent")) == 0 {
			out.Set("traceparent", parent)
			if state != "" && len(out.Get("tracestate")) == 0 {
				out.Set("tracestate", state)
			}
		}
	}
	if len(out) == 0 {
		return ctx
	}
	return metadata.NewOutgoingContext(ctx, out)
}

// validGRPCKey reports whether k may be sent as gRPC metadata.
func validGRPCKey(k string) bool {
	if k == "" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// deliverGRPC calls OnTopicEvent and maps the answer as daprd: SUCCESS
// acks, RETRY and unknown statuses retry, DROP drops; an app that does not
// implement OnTopicEvent (Unimplemented) acks with a warning; other errors
// retry.
func (t *appTarget) deliverGRPC(ctx context.Context, log *slog.Logger, ev *event, path string) error {
	req, err := ev.topicEventRequest(path)
	if err != nil {
		return fmt.Errorf("error returned from app while processing pub/sub event: %w", err)
	}
	ctx = outgoingMetadata(ctx, ev.metadata, ev)
	resp, err := t.app.GRPC.Callback.OnTopicEvent(ctx, req)
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			log.Warn("non-retriable error returned from app while processing pub/sub event", "error", err)
			return nil
		}
		return fmt.Errorf("error returned from app while processing pub/sub event %v: %w", ev.id(), err)
	}
	return topicEventStatus(log, ev.id(), resp.GetStatus())
}

// topicEventStatus maps a gRPC subscriber's verdict.
func topicEventStatus(log *slog.Logger, id string, st runtimev1.TopicEventResponse_TopicEventResponseStatus) error {
	switch st {
	case runtimev1.TopicEventResponse_SUCCESS:
		return nil
	case runtimev1.TopicEventResponse_RETRY:
		return fmt.Errorf("RETRY status returned from app while processing pub/sub event %v", id)
	case runtimev1.TopicEventResponse_DROP:
		log.Warn("DROP status returned from app while processing pub/sub event")
		return errDropped
	}
	return fmt.Errorf("unknown status returned from app while processing pub/sub event %v, status: %v", id, st)
}
