package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/mecha-dev/mecha/internal/channel"
)

// maxAppAnswer bounds how much of the app's answer to an event is read.
const maxAppAnswer = 1 << 20

// appTarget delivers to the sidecar's app over the app channel.
type appTarget struct {
	app   *channel.App
	appID string
}

// waitReady holds deliveries until the app listens and, with health
// checks, while it is unhealthy.
func (t *appTarget) waitReady(ctx context.Context) error { return t.app.WaitReady(ctx) }

func (t *appTarget) deliver(ctx context.Context, log *slog.Logger, ev *event, path string) error {
	if t.app.GRPC != nil {
		return t.deliverGRPC(ctx, log, ev, path)
	}
	return t.deliverHTTP(ctx, log, ev, path)
}

func (t *appTarget) deliverBulk(ctx context.Context, log *slog.Logger, req *bulkRequest) ([]outcome, error) {
	if t.app.GRPC != nil {
		return t.deliverBulkGRPC(ctx, log, req)
	}
	return t.deliverBulkHTTP(ctx, log, req)
}

// appHeaders turns message metadata into request headers, as daprd:
// every entry that is a valid header except Content-Length and
// Content-Type, plus the event's trace context.
func appHeaders(md map[string]string, ev *event) http.Header {
	h := make(http.Header, len(md)+3)
	for k, v := range md {
		if strings.EqualFold(k, "content-length") || strings.EqualFold(k, "content-type") {
			continue
		}
		if httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v) {
			h.Set(k, v)
		}
	}
	if ev != nil {
		parent, state := ev.traceContext()
		if parent != "" && h.Get("traceparent") == "" {
			h.Set("traceparent", parent)
			if state != "" && h.Get("tracestate") == "" {
				h.Set("tracestate", state)
			}
		}
	}
	return h
}

// appAnswer is an HTTP app's answer to one event.
type appAnswer struct {
	Status string `json:"status"`
}

// deliverHTTP POSTs the CloudEvent to the route and maps the answer as
// daprd: 2xx with no (or no parseable) body, no status or SUCCESS acks;
// RETRY and unknown statuses retry; DROP drops; 404 drops (logged as an
// error); any other status and transport errors retry.
func (t *appTarget) deliverHTTP(ctx context.Context, log *slog.Logger, ev *event, path string) error {
	h := appHeaders(ev.metadata, ev)
	h.Set("Content-Type", contentTypeCloudEvent)
	resp, err := t.app.HTTP.Do(ctx, http.MethodPost, path, h, bytes.NewReader(ev.body))
	if err != nil {
		return fmt.Errorf("error returned from app channel while sending pub/sub event to app: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAppAnswer))
	if resp.StatusCode/100 == 2 {
		var a appAnswer
		// The first JSON value counts, as daprd's decoder reads it.
		if json.NewDecoder(bytes.NewReader(body)).Decode(&a) != nil {
			return nil
		}
		switch a.Status {
		case "", "SUCCESS":
			return nil
		case "RETRY":
			return fmt.Errorf("RETRY status returned from app while processing pub/sub event %v", ev.id())
		case "DROP":
			log.Warn("DROP status returned from app while processing pub/sub event")
			return errDropped
		}
		return fmt.Errorf("unknown status returned from app while processing pub/sub event %v, status: %v", ev.id(), a.Status)
	}
	if resp.StatusCode == http.StatusNotFound {
		log.Error("non-retriable error returned from app while processing pub/sub event; dropped", "status", resp.StatusCode, "path", path, "body", snippet(body))
		return errDropped
	}
	log.Warn("retriable error returned from app while processing pub/sub event", "status", resp.StatusCode, "path", path, "body", snippet(body))
	return fmt.Errorf("retriable error returned from app while processing pub/sub event %v: status code %d", ev.id(), resp.StatusCode)
}

// snippet shortens an app's answer for a log line.
func snippet(b []byte) string {
	const n = 256
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
