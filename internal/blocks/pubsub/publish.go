package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/resiliency"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// PublishRequest is one event to publish.
type PublishRequest struct {
	PubsubName string
	Topic      string
	Data       []byte
	// ContentType is the data's media type (default text/plain);
	// application/cloudevents+json means Data already is a CloudEvent.
	ContentType string
	// Metadata are the request's metadata: rawPayload, ttlInSeconds,
	// cloudevent.* overrides and broker-specific keys, all passed on to the
	// broker.
	Metadata map[string]string
	// TraceParent and TraceState are the caller's W3C trace context, copied
	// into the envelope.
	TraceParent, TraceState string
}

// Publish wraps and publishes one event, with daprd's errors: empty or
// unknown names, bad metadata, a body sent as a CloudEvent that is not
// one, a topic the component's scopes forbid, and broker failures.
func (b *Block) Publish(ctx context.Context, req PublishRequest) (err error) {
	ctx, span := tracing.StartPublish(ctx, req.PubsubName, req.Topic)
	defer func() { tracing.End(span, err) }()
	br, raw, err := b.resolve(req.PubsubName, req.Topic, req.Metadata)
	if err != nil {
		return err
	}
	data := req.Data
	contentType := req.ContentType
	if !raw {
		if data, err = b.envelope(ctx, br, req.Topic, req.ContentType, req.Data, req.TraceParent, req.TraceState, req.Metadata); err != nil {
			return err
		}
		contentType = contentTypeCloudEvent
	}
	if !br.scopes.canPublish(req.Topic) {
		return forbidden(br.name, req.Topic, b.opts.AppID)
	}
	start := time.Now()
	preq := &cpubsub.PublishRequest{Topic: b.topic(br, req.Topic), Data: data, ContentType: contentType, Metadata: req.Metadata}
	err = b.outbound(br.name).Run(ctx, func(ctx context.Context) error { return br.Publish(ctx, preq) })
	b.published(br.name, req.Topic, err == nil, start)
	if err != nil {
		return publishFailed(br.name, req.Topic, err)
	}
	return nil
}

// resolve validates the names and the rawPayload metadata in daprd's
// order and returns the broker.
func (b *Block) resolve(pubsubName, topic string, md map[string]string) (*broker, bool, error) {
	if pubsubName == "" {
		return nil, false, apierr.PubsubEmpty.New("pubsub name is empty").WithResource("pubsub", "").WithMetadata(flatten(md)...)
	}
	br, ok := b.brokers.Get(pubsubName)
	if !ok {
		return nil, false, apierr.PubsubNotFound.New("pubsub %s is not found", pubsubName)
	}
	if topic == "" {
		return nil, false, apierr.PubsubTopicEmpty.New("topic is empty in pubsub %s", pubsubName).WithResource("pubsub", pubsubName).WithMetadata(flatten(md)...)
	}
	raw, err := rawPayload(md)
	if err != nil {
		return nil, false, apierr.PubsubMetadata.New("failed deserializing metadata. Error: %v", err).WithResource("pubsub", pubsubName).WithMetadata(flatten(md)...)
	}
	return br, raw, nil
}

// envelope builds and encodes the CloudEvent for one event.
func (b *Block) envelope(ctx context.Context, br *broker, topic, contentType string, data []byte, traceParent, traceState string, md map[string]string) ([]byte, error) {
	traceParent, traceState = eventTrace(ctx, traceParent, traceState)
	ce, err := newEnvelope(envelopeRequest{
		source: b.opts.AppID, topic: topic, pubsub: br.name, contentType: contentType,
		data: data, traceParent: traceParent, traceState: traceState, metadata: md,
	})
	if err != nil {
		return nil, apierr.PubsubCloudEvent.New("cannot create cloudevent").WithResource("pubsub", br.name).
			WithMetadata("appID", b.opts.AppID, "error", err.Error())
	}
	applyTTL(ce, br.features, md)
	out, err := json.Marshal(ce)
	if err != nil {
		return nil, apierr.PubsubMarshalEnvelope.New("error when marshalling cloud event envelope for topic %s pubsub %s: %v", topic, br.name, err).
			WithResource("pubsub", br.name).WithMetadata("appID", b.opts.AppID, "error", err.Error())
	}
	return out, nil
}

func forbidden(pubsubName, topic, appID string) error {
	err := errors.New("topic " + topic + " is not allowed for app id " + appID)
	return apierr.PubsubForbidden.New("%v", err).WithResource("pubsub", pubsubName).WithMetadata("topic", topic, "error", err.Error())
}

func publishFailed(pubsubName, topic string, err error) error {
	return apierr.PubsubPublish.Wrap(err, "error when publishing to topic %s in pubsub %s", topic, pubsubName).
		WithResource("pubsub", pubsubName).WithMetadata("topic", topic, "error", err.Error())
}

// flatten turns metadata into ErrorInfo key/value pairs.
func flatten(md map[string]string) []string {
	out := make([]string, 0, 2*len(md))
	for k, v := range md {
		out = append(out, k, v)
	}
	return out
}

// BulkPublishRequest is a batch of events for one topic.
type BulkPublishRequest struct {
	PubsubName string
	Topic      string
	Entries    []BulkEntry
	// Metadata apply to the whole request; an entry's own metadata, when
	// it has any, is merged over them (daprd leaves entries without
	// metadata alone).
	Metadata                map[string]string
	TraceParent, TraceState string
}

// BulkEntry is one event of a batch.
type BulkEntry struct {
	EntryID     string
	Event       []byte
	ContentType string
	Metadata    map[string]string
}

// BulkPublishResult lists the entries that were not published.
type BulkPublishResult struct {
	FailedEntries []FailedEntry
}

// FailedEntry is an entry that was not published, with the reason.
type FailedEntry struct {
	EntryID string
	Error   string
}

// bulkConcurrency bounds the one-by-one fallback, as daprd's default bulk
// publisher.
const bulkConcurrency = 100

// BulkPublish wraps every entry (unless rawPayload, or the entry already
// is a CloudEvent) and publishes them with the broker's BulkPublish, or one
// by one with bounded concurrency. Failed entries are listed in the result:
// with an ERR_PUBSUB_PUBLISH_MESSAGE error when the call failed (the broker
// failed as a whole, or some one-by-one publish failed, as daprd's default
// bulk publisher), without one when the broker reported a partial failure.
// Other errors (names, metadata, entries, scopes) fail the request before
// anything is published.
func (b *Block) BulkPublish(ctx context.Context, req BulkPublishRequest) (_ BulkPublishResult, err error) {
	var spans []trace.Span // one per event, as daprd
	defer func() {
		for _, s := range spans {
			tracing.End(s, err)
		}
	}()
	br, raw, err := b.resolve(req.PubsubName, req.Topic, req.Metadata)
	if err != nil {
		return BulkPublishResult{}, err
	}
	seen := make(map[string]struct{}, len(req.Entries))
	entries := make([]cpubsub.BulkEntry, len(req.Entries))
	for i, e := range req.Entries {
		if _, dup := seen[e.EntryID]; dup || e.EntryID == "" {
			err := errors.New("entryId is duplicated or not present for entry")
			return BulkPublishResult{}, apierr.PubsubMarshalEvents.New("error marshaling events to bytes for topic %s pubsub %s. error: %v", req.Topic, br.name, err).
				WithResource("pubsub", br.name).WithMetadata("appID", b.opts.AppID, "error", err.Error())
		}
		seen[e.EntryID] = struct{}{}
		md := e.Metadata
		if md != nil {
			md = maps.Clone(req.Metadata)
			if md == nil {
				md = map[string]string{}
			}
			maps.Copy(md, e.Metadata)
		}
		entries[i] = cpubsub.BulkEntry{EntryID: e.EntryID, Data: e.Event, ContentType: e.ContentType, Metadata: md}
		if !raw {
			ectx, span := tracing.StartPublish(ctx, req.PubsubName, req.Topic)
			spans = append(spans, span)
			data, err := b.envelope(ectx, br, req.Topic, e.ContentType, e.Event, req.TraceParent, req.TraceState, md)
			if err != nil {
				return BulkPublishResult{}, err
			}
			entries[i].Data, entries[i].ContentType = data, contentTypeCloudEvent
		}
	}
	if !br.scopes.canPublish(req.Topic) {
		return BulkPublishResult{}, forbidden(br.name, req.Topic, b.opts.AppID)
	}
	topic := b.topic(br, req.Topic)
	if br.bulk == nil {
		// One by one: any failure fails the call, listing the entries.
		failed := publishEach(ctx, br, topic, entries, b.outbound(br.name))
		if len(failed) == 0 {
			return BulkPublishResult{}, nil
		}
		return BulkPublishResult{FailedEntries: failed}, publishFailed(br.name, req.Topic,
			fmt.Errorf("%d of %d entries were not published: %s", len(failed), len(entries), failed[0].Error))
	}
	var res cpubsub.BulkPublishResponse
	err = b.outbound(br.name).Run(ctx, func(ctx context.Context) (err error) {
		res, err = br.bulk.BulkPublish(ctx, &cpubsub.BulkPublishRequest{Topic: topic, Entries: entries, Metadata: req.Metadata})
		return err
	})
	if err != nil {
		// The call failed as a whole: every entry is reported failed.
		out := BulkPublishResult{FailedEntries: make([]FailedEntry, len(entries))}
		for i, e := range entries {
			out.FailedEntries[i] = FailedEntry{EntryID: e.EntryID, Error: err.Error()}
		}
		return out, publishFailed(br.name, req.Topic, err)
	}
	// A partial failure is an answer, not an error (gRPC returns it as the
	// response, as daprd).
	out := BulkPublishResult{}
	for _, f := range res.FailedEntries {
		fe := FailedEntry{EntryID: f.EntryID}
		if f.Error != nil {
			fe.Error = f.Error.Error()
		}
		out.FailedEntries = append(out.FailedEntries, fe)
	}
	return out, nil
}

// publishEach is the bulk fallback: every entry published on its own, at
// most bulkConcurrency at a time. It returns the entries that failed.
func publishEach(ctx context.Context, br *broker, topic string, entries []cpubsub.BulkEntry, pol *resiliency.Policy) []FailedEntry {
	var (
		mu     sync.Mutex
		failed []FailedEntry
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, bulkConcurrency)
	for _, e := range entries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := pol.Run(ctx, func(ctx context.Context) error {
				return br.Publish(ctx, &cpubsub.PublishRequest{Topic: topic, Data: e.Data, ContentType: e.ContentType, Metadata: e.Metadata})
			})
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			failed = append(failed, FailedEntry{EntryID: e.EntryID, Error: err.Error()})
		})
	}
	wg.Wait()
	return failed
}
