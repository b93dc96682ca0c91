package pubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Back-off of the programmatic subscription discovery while the app is not
// answering (not listening yet, or a 5xx): daprd gives up after a few
// tries and the app then has no subscriptions; Mecha keeps asking.
const (
	discoverFirstDelay = 500 * time.Millisecond
	discoverMaxDelay   = 10 * time.Second
	discoverTimeout    = 10 * time.Second
	// maxSubscribeAnswer bounds the app's /dapr/subscribe answer.
	maxSubscribeAnswer = 4 << 20
)

// errRetryable marks a discovery failure worth asking again for.
var errRetryable = errors.New("the app is not answering yet")

// discover asks the app for its programmatic subscriptions once it is
// ready, retrying with back-off while it does not answer, and installs
// them. It is one goroutine of the block, ending with ctx.
func (b *Block) discover(ctx context.Context) {
	if err := b.opts.App.WaitReady(ctx); err != nil {
		return
	}
	delay := discoverFirstDelay
	for attempt := 1; ; attempt++ {
		specs, err := b.fetchSubscriptions(ctx)
		if err == nil {
			for _, spec := range specs {
				s, err := compile(spec, Programmatic)
				if err != nil {
					b.reportRejected(fmt.Sprintf("%s/%s (programmatic)", spec.PubsubName, spec.Topic), err)
					continue
				}
				b.install(ctx, s)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, errRetryable) {
			b.reportRejected("programmatic subscriptions", err)
			return
		}
		logf := b.log.Debug
		if attempt == 1 || attempt%10 == 0 {
			logf = b.log.Warn
		}
		logf("could not get the app's subscriptions; retrying", "attempt", attempt, "retryIn", delay, "error", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, discoverMaxDelay)
	}
}

// fetchSubscriptions asks the app once: GET /dapr/subscribe for HTTP apps,
// ListTopicSubscriptions for gRPC apps. Errors worth retrying wrap
// errRetryable; others are a malformed answer, reported once.
func (b *Block) fetchSubscriptions(ctx context.Context) ([]SubscriptionSpec, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverTimeout)
	defer cancel()
	if b.opts.App.GRPC != nil {
		return b.fetchGRPC(ctx)
	}
	return b.fetchHTTP(ctx)
}

func (b *Block) fetchHTTP(ctx context.Context) ([]SubscriptionSpec, error) {
	h := http.Header{"Content-Type": {contentTypeJSON}, "Dapr-App-Id": {b.opts.AppID}}
	resp, err := b.opts.App.HTTP.Do(ctx, http.MethodGet, "/dapr/subscribe", h, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: GET /dapr/subscribe: %v", errRetryable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSubscribeAnswer+1))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		b.log.Debug("the app did not subscribe to any topic (GET /dapr/subscribe answered 404)")
		return nil, nil
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%w: GET /dapr/subscribe answered status %d", errRetryable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		b.log.Error("the app answered GET /dapr/subscribe with an unexpected status; no programmatic subscriptions", "status", resp.StatusCode)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: reading the answer to GET /dapr/subscribe: %v", errRetryable, err)
	case len(body) > maxSubscribeAnswer:
		return nil, fmt.Errorf("the answer to GET /dapr/subscribe is larger than %d bytes", maxSubscribeAnswer)
	}
	return b.parseSubscribeAnswer(body)
}

// subscriptionJSON is one entry of the /dapr/subscribe answer.
type subscriptionJSON struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	DeadLetterTopic string            `json:"deadLetterTopic"`
	Metadata        map[string]string `json:"metadata"`
	Route           string            `json:"route"`
	Routes          struct {
		Rules []struct {
			Match string `json:"match"`
			Path  string `json:"path"`
		} `json:"rules"`
		Default string `json:"default"`
	} `json:"routes"`
	BulkSubscribe struct {
		Enabled            bool  `json:"enabled"`
		MaxMessagesCount   int32 `json:"maxMessagesCount"`
		MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs"`
	} `json:"bulkSubscribe"`
}

// parseSubscribeAnswer reads the app's JSON array. An answer that is not
// an array is refused whole; an entry that does not decode is refused
// alone (logged and listed in resourceErrors), so one typo does not cost
// the app every subscription. Entries without any route are dropped with a
// warning, as daprd.
func (b *Block) parseSubscribeAnswer(body []byte) ([]SubscriptionSpec, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("the answer to GET /dapr/subscribe is not a JSON array of subscriptions: %v (answer: %s)", err, snippet(body))
	}
	specs := make([]SubscriptionSpec, 0, len(items))
	for i, raw := range items {
		var j subscriptionJSON
		if err := json.Unmarshal(raw, &j); err != nil {
			b.reportRejected(fmt.Sprintf("/dapr/subscribe entry %d", i), fmt.Errorf("malformed subscription %s: %v", snippet(raw), err))
			continue
		}
		spec := SubscriptionSpec{
			PubsubName: j.PubsubName, Topic: j.Topic, Metadata: j.Metadata, DeadLetterTopic: j.DeadLetterTopic,
			Default: j.Routes.Default,
			BulkSubscribe: BulkSubscribe{
				Enabled: j.BulkSubscribe.Enabled, MaxMessagesCount: j.BulkSubscribe.MaxMessagesCount,
				MaxAwaitDurationMs: j.BulkSubscribe.MaxAwaitDurationMs,
			},
		}
		if spec.Default == "" {
			spec.Default = j.Route
		}
		for _, r := range j.Routes.Rules {
			spec.Rules = append(spec.Rules, RuleSpec{Match: r.Match, Path: r.Path})
		}
		if len(spec.Rules) == 0 && spec.Default == "" {
			b.log.Warn("the app's subscription has no route; ignored", "pubsub", spec.PubsubName, "topic", spec.Topic)
			continue
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func (b *Block) fetchGRPC(ctx context.Context) ([]SubscriptionSpec, error) {
	resp, err := b.opts.App.GRPC.Callback.ListTopicSubscriptions(ctx, &emptypb.Empty{})
	if status.Code(err) == codes.Unimplemented {
		b.log.Info("the gRPC app does not implement ListTopicSubscriptions; no programmatic subscriptions")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ListTopicSubscriptions: %v", errRetryable, err)
	}
	specs := make([]SubscriptionSpec, 0, len(resp.GetSubscriptions()))
	for _, s := range resp.GetSubscriptions() {
		specs = append(specs, grpcSpec(s))
	}
	return specs, nil
}

// grpcSpec converts a gRPC app's subscription. Without routes, or with
// none that apply, everything goes to the path "" (gRPC apps get the path
// only as information), as daprd.
func grpcSpec(s *runtimev1.TopicSubscription) SubscriptionSpec {
	spec := SubscriptionSpec{
		PubsubName: s.GetPubsubName(), Topic: s.GetTopic(), Metadata: s.GetMetadata(),
		DeadLetterTopic: s.GetDeadLetterTopic(), Default: s.GetRoutes().GetDefault(),
	}
	for _, r := range s.GetRoutes().GetRules() {
		spec.Rules = append(spec.Rules, RuleSpec{Match: r.GetMatch(), Path: r.GetPath()})
	}
	if len(spec.Rules) == 0 && spec.Default == "" {
		spec.Rules = []RuleSpec{{}}
	}
	if bs := s.GetBulkSubscribe(); bs != nil {
		spec.BulkSubscribe = BulkSubscribe{Enabled: bs.GetEnabled(), MaxMessagesCount: bs.GetMaxMessagesCount(), MaxAwaitDurationMs: bs.GetMaxAwaitDurationMs()}
	}
	return spec
}
