package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// deliverBulkHTTP POSTs a batch in daprd's bulk shape and maps the
// answer: 2xx with {"statuses":[{entryId, status}]} per entry (missing
// entries retry), 404 acknowledges every entry (dropped, not retried),
// anything else retries the batch.
func (t *appTarget) deliverBulkHTTP(ctx context.Context, log *slog.Logger, req *bulkRequest) ([]outcome, error) {
	env := bulkEnvelope{
		ID: uuid.NewString(), Type: bulkEventType, Topic: req.topic, PubsubName: req.pubsub,
		Metadata: req.metadata, Entries: make([]bulkEntryJSON, len(req.entries)),
	}
	for i, e := range req.entries {
		env.Entries[i] = bulkEntryJSON{EntryID: e.id, Event: e.entryEvent(req.raw), Metadata: e.metadata, ContentType: e.contentType}
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("serializing the bulk event: %w", err)
	}
	h := appHeaders(req.metadata, nil)
	h.Set("Content-Type", contentTypeJSON)
	resp, err := t.app.HTTP.Do(ctx, http.MethodPost, req.path, h, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("error from app channel while sending pub/sub event to app: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAppAnswer))
	if resp.StatusCode == http.StatusNotFound {
		log.Error("non-retriable error returned from app while processing bulk pub/sub event; dropped", "status", resp.StatusCode, "path", req.path)
		return fill(len(req.entries), outcomeAck), nil
	}
	if resp.StatusCode/100 != 2 {
		log.Warn("retriable error returned from app while processing bulk pub/sub event", "status", resp.StatusCode, "path", req.path, "body", snippet(answer))
		return nil, fmt.Errorf("%w: status code %d", errBulkNotAnswered, resp.StatusCode)
	}
	var a bulkAnswer
	if err := json.Unmarshal(answer, &a); err != nil {
		return nil, fmt.Errorf("failed unmarshalling app response for bulk subscribe: %w", err)
	}
	statuses := make(map[string]string, len(a.Statuses))
	for _, s := range a.Statuses {
		statuses[s.EntryID] = s.Status
	}
	return outcomes(log, req, func(id string) (string, bool) { s, ok := statuses[id]; return s, ok }), nil
}

// outcomes maps the app's per-entry statuses onto the request's entries.
func outcomes(log *slog.Logger, req *bulkRequest, statusOf func(id string) (string, bool)) []outcome {
	out := make([]outcome, len(req.entries))
	for i, e := range req.entries {
		st, ok := statusOf(e.id)
		if !ok {
			continue // not answered: retry
		}
		out[i] = statusOutcome(st)
		if out[i] == outcomeDrop {
			log.Warn("DROP status returned from app while processing pub/sub event", "entryId", e.id)
		}
	}
	return out
}

func fill(n int, o outcome) []outcome {
	out := make([]outcome, n)
	for i := range out {
		out[i] = o
	}
	return out
}

// deliverBulkGRPC calls OnBulkTopicEvent, or OnBulkTopicEventAlpha1 for
// apps that only implement the alpha (as daprd); an app implementing
// neither acknowledges every entry with a warning.
func (t *appTarget) deliverBulkGRPC(ctx context.Context, log *slog.Logger, req *bulkRequest) ([]outcome, error) {
	in := &runtimev1.TopicEventBulkRequest{
		Id: uuid.NewString(), Metadata: req.metadata, Topic: req.topic, PubsubName: req.pubsub,
		Type: bulkEventType, Path: req.path, Entries: make([]*runtimev1.TopicEventBulkRequestEntry, 0, len(req.entries)),
	}
	failed := map[string]bool{}
	for _, e := range req.entries {
		entry := &runtimev1.TopicEventBulkRequestEntry{EntryId: e.id, ContentType: e.contentType, Metadata: e.metadata}
		if req.raw {
			entry.Event = &runtimev1.TopicEventBulkRequestEntry_Bytes{Bytes: e.ev.data}
		} else {
			ce, err := e.ev.cloudEventRequest()
			if err != nil {
				log.Error("cannot convert an entry of a bulk event", "entryId", e.id, "error", err)
				failed[e.id] = true
				continue
			}
			entry.Event = &runtimev1.TopicEventBulkRequestEntry_CloudEvent{CloudEvent: ce}
		}
		in.Entries = append(in.Entries, entry)
	}
	ctx = outgoingMetadata(ctx, req.metadata, nil)
	resp, err := t.app.GRPC.Callback.OnBulkTopicEvent(ctx, in)
	if status.Code(err) == codes.Unimplemented {
		resp, err = t.app.GRPC.Alpha.OnBulkTopicEventAlpha1(ctx, in) //nolint:staticcheck // the alpha is what older SDKs implement
	}
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			log.Warn("non-retriable error returned from app while processing bulk pub/sub event", "error", err)
			return fill(len(req.entries), outcomeAck), nil
		}
		return nil, fmt.Errorf("error returned from app while processing bulk pub/sub event: %w", err)
	}
	statuses := make(map[string]runtimev1.TopicEventResponse_TopicEventResponseStatus, len(resp.GetStatuses()))
	for _, s := range resp.GetStatuses() {
		statuses[s.GetEntryId()] = s.GetStatus()
	}
	return outcomes(log, req, func(id string) (string, bool) {
		if failed[id] {
			return "", false
		}
		s, ok := statuses[id]
		return s.String(), ok
	}), nil
}
