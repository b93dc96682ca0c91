package pubsub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

// outcome is a receiver's verdict on one entry of a batch.
type outcome int

const (
	outcomeRetry outcome = iota // the zero value: no answer means retry
	outcomeAck
	outcomeDrop
)

// bulkItem is one message waiting in a batch; its handler waits for done.
type bulkItem struct {
	msg     *cpubsub.Message
	entryID string
	done    chan error // buffered: the batch never waits for the handler
}

// bulkRequest is the part of a batch routed to one path.
type bulkRequest struct {
	topic, pubsub, path string
	// metadata is the batch's metadata ({"pubsubName": ...}).
	metadata map[string]string
	raw      bool
	entries  []*bulkEntry
}

// bulkEntry is one event of a batch.
type bulkEntry struct {
	id          string
	ev          *event
	metadata    map[string]string // the message's own metadata
	contentType string
}

// enqueue is the broker handler of a bulk subscription: the message joins
// the next batch and the handler returns that entry's outcome.
func (r *running) enqueue(rctx, hctx context.Context, msg *cpubsub.Message) error {
	if !r.gate.enter() {
		return errClosed
	}
	defer r.gate.leave()
	it := &bulkItem{msg: msg, entryID: uuid.NewString(), done: make(chan error, 1)}
	select {
	case r.batch <- it:
	case <-hctx.Done():
		return r.abandoned(rctx, hctx.Err())
	case <-rctx.Done():
		return errClosed
	}
	select {
	case err := <-it.done:
		return r.abandoned(rctx, err)
	case <-hctx.Done():
		return r.abandoned(rctx, hctx.Err())
	case <-rctx.Done():
		return errClosed
	}
}

// batchLoop collects messages until count of them are waiting or await
// has passed since the first, then delivers them, as daprd's default bulk
// subscriber. It is the subscription's one batching goroutine.
func (r *running) batchLoop(ctx context.Context, count int, await time.Duration) {
	timer := time.NewTimer(await)
	timer.Stop()
	defer timer.Stop()
	var items []*bulkItem
	flush := func() {
		timer.Stop()
		r.flush(ctx, items)
		items = nil
	}
	for {
		select {
		case <-ctx.Done():
			for _, it := range items {
				it.done <- errClosed
			}
			return
		case it := <-r.batch:
			if len(items) == 0 {
				timer.Reset(await)
			}
			items = append(items, it)
		drain:
			for len(items) < count {
				select {
				case it := <-r.batch:
					items = append(items, it)
				default:
					break drain
				}
			}
			if len(items) >= count {
				flush()
			}
		case <-timer.C:
			if len(items) > 0 {
				flush()
			}
		}
	}
}

// flush processes one batch as daprd's bulk subscription handler: each
// entry is decoded, expired ones dropped, the others routed; each route's
// entries go to the app in one call; entries that fail go to the
// dead-letter topic when there is one. Every item gets its outcome.
func (r *running) flush(ctx context.Context, items []*bulkItem) {
	s := r.sub.Load()
	results := make([]error, len(items))
	var paths []string
	groups := map[string]*bulkRequest{}
	index := map[*bulkEntry]int{}
	for i, it := range items {
		ev, err := r.b.decode(r.br, s, it.msg)
		if err != nil {
			r.log.Error("error deserializing one of the messages of a bulk event", "entryId", it.entryID, "error", err)
			results[i] = err
			continue
		}
		if !s.raw && ev.expired() {
			r.log.Warn("dropping expired pub/sub event", "id", ev.id(), "expiration", ev.ce[fieldExpiration])
			_ = r.deadLetter(ctx, s, it.msg)
			continue
		}
		path, ok, err := route(s.rules, ev.ce)
		if err != nil {
			r.log.Error("error finding a matching route for an entry of a bulk event", "entryId", it.entryID, "error", err)
			results[i] = err
			continue
		}
		if !ok {
			r.log.Warn("no route matches an entry of a bulk event; skipping", "entryId", it.entryID)
			_ = r.deadLetter(ctx, s, it.msg)
			continue
		}
		g := groups[path]
		if g == nil {
			g = &bulkRequest{topic: ev.topic, pubsub: r.br.name, path: path, raw: s.raw, metadata: map[string]string{metadataPubsub: r.br.name}}
			groups[path] = g
			paths = append(paths, path)
		}
		e := &bulkEntry{id: it.entryID, ev: ev, metadata: it.msg.Metadata, contentType: ev.contentType}
		if e.contentType == "" {
			e.contentType = contentTypeCloudEvent
			if s.raw {
				e.contentType = contentTypeBinary
			}
		}
		index[e] = i
		g.entries = append(g.entries, e)
	}
	if len(paths) > 0 {
		if err := r.target.waitReady(ctx); err != nil {
			for _, g := range groups {
				for _, e := range g.entries {
					results[index[e]] = err
				}
			}
			paths = nil
		}
	}
	for _, p := range paths {
		g := groups[p]
		dctx, spans := startBulkSpans(ctx, g)
		outs, err := r.deliverBulkResilient(dctx, s, g)
		endBulkSpans(spans, outs, err)
		for j, e := range g.entries {
			i := index[e]
			switch {
			case err != nil:
				results[i] = err
			case outs[j] == outcomeAck:
			case outs[j] == outcomeDrop:
				_ = r.deadLetter(ctx, s, items[i].msg)
			default:
				results[i] = fmt.Errorf("RETRY required while processing bulk subscribe event for entry id: %v", e.id)
			}
		}
	}
	if s.deadLetterTopic != "" && ctx.Err() == nil {
		for i, err := range results {
			if err != nil && r.deadLetter(ctx, s, items[i].msg) == nil {
				results[i] = nil
			}
		}
	}
	for i, it := range items {
		it.done <- results[i]
	}
}

// bulkEnvelope is the body an HTTP app gets for a batch (daprd's
// NewBulkSubscribeEnvelope).
type bulkEnvelope struct {
	ID         string            `json:"id"`
	Type       string            `json:"type"`
	Topic      string            `json:"topic"`
	PubsubName string            `json:"pubsubname"`
	Metadata   map[string]string `json:"metadata"`
	Entries    []bulkEntryJSON   `json:"entries"`
}

type bulkEntryJSON struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	Metadata    map[string]string `json:"metadata"`
	ContentType string            `json:"contentType,omitempty"`
}

// bulkAnswer is an app's answer to a batch.
type bulkAnswer struct {
	Statuses []struct {
		EntryID string `json:"entryId"`
		Status  string `json:"status"`
	} `json:"statuses"`
}

// entryEvent is an entry's "event" for HTTP apps: the CloudEvent as
// published, or for raw payloads the data as a base64 string.
func (e *bulkEntry) entryEvent(raw bool) json.RawMessage {
	if raw {
		b, _ := json.Marshal(base64.StdEncoding.EncodeToString(e.ev.data))
		return b
	}
	if json.Valid(e.ev.body) {
		return e.ev.body
	}
	b, err := json.Marshal(e.ev.ce)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}

// statusOutcome maps a bulk entry status: a missing or unknown status is
// RETRY, as daprd.
func statusOutcome(st string) outcome {
	switch st {
	case "SUCCESS":
		return outcomeAck
	case "DROP":
		return outcomeDrop
	}
	return outcomeRetry
}

// errBulkNotAnswered is the error of a batch the app did not accept.
var errBulkNotAnswered = errors.New("the app did not accept the bulk event")
