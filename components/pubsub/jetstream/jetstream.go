// Package jetstream is the pubsub.jetstream component: a broker on NATS
// JetStream, configured with Dapr's metadata for the same component type so
// that its manifests work unchanged, and used by self-hosted Mecha as the
// default pub/sub (the JetStream embedded in the local control plane).
//
// Layout: a topic is the NATS subject of the same name. Its messages go to
// the stream named by streamName, or to the stream whose subjects cover
// the topic (one you created), or else to a stream of the topic's own,
// which the broker creates on first use (file storage, subjects = the
// topic, kept until streamMaxAge/streamMaxBytes say otherwise). Dapr
// requires the streams to exist; creating them keeps zero-setup use
// zero-setup. Publish metadata travels as message headers.
//
// Consumer groups: every sidecar of a group (durableName, else
// queueGroupName, else consumerID, which the runtime sets to the app id)
// pulls from one durable pull consumer per topic, so the group's members
// share the topic's messages and every group gets all of them. A new group
// starts with the first message the stream holds (deliverPolicy all).
//
// Delivery: Publish returns once the stream has stored the message (the
// PubAck). A message is acknowledged when its handler succeeds; when the
// handler fails it is NAKed with a delay (backOff, or a doubling one) and
// comes back after it; a message that is never answered (its sidecar died,
// the connection broke) comes back after ackWait. Delivery is at least
// once, across server restarts for file-backed streams.
//
// TTL (metadata ttlInSeconds): the broker stamps the expiry into a header
// and never hands an expired message to a handler (it terminates it
// instead); on servers 2.11 and later it also sets Nats-TTL, for streams
// it created with per-message TTLs allowed, so the server removes the
// message too.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/pubsub"
)

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("pubsub.jetstream: broker is closed")

// Connection behaviour: reconnect without end, soon after a server goes
// away (the nats.go default waits 2s between attempts and gives up after
// 60), so that a restarted server is back in use within a second.
const (
	reconnectWait  = 250 * time.Millisecond
	connectTimeout = 5 * time.Second
	// asyncAckTimeout bounds the wait for the PubAck of a bulk-published
	// entry whose request ctx has no deadline.
	asyncAckTimeout = 30 * time.Second
	// flushTimeout bounds the flush of pending acknowledgements on Close.
	flushTimeout = 2 * time.Second
)

// Broker is the JetStream broker.
type Broker struct {
	log *slog.Logger

	cfg     settings
	nc      *nats.Conn
	js      jetstream.JetStream
	streams streamCache

	// ctx ends on Close; every subscription's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	inited bool
	closed bool
}

var (
	_ pubsub.Broker        = (*Broker)(nil)
	_ pubsub.BulkPublisher = (*Broker)(nil)
)

// New returns an uninitialised broker. It does no I/O and starts nothing.
func New(deps components.Deps) *Broker {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{log: log}
}

// Init decodes the metadata (see settings for the properties), connects to
// the server and checks that it has JetStream enabled for the account.
func (b *Broker) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("pubsub.jetstream: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		b.log.Warn(w)
	}
	b.mu.Lock()
	if b.closed || b.inited {
		b.mu.Unlock()
		return errors.New("pubsub.jetstream: Init called twice or after Close")
	}
	b.mu.Unlock()

	nc, err := b.connect(ctx, cfg)
	if err != nil {
		return err
	}
	var js jetstream.JetStream
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(asyncAckTimeout)}
	switch {
	case cfg.Domain != "":
		js, err = jetstream.NewWithDomain(nc, cfg.Domain, jsOpts...)
	case cfg.APIPrefix != "":
		js, err = jetstream.NewWithAPIPrefix(nc, cfg.APIPrefix, jsOpts...)
	default:
		js, err = jetstream.New(nc, jsOpts...)
	}
	if err == nil {
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("pubsub.jetstream: JetStream is not available at %s (is the server started with JetStream, -js?): %w", nc.ConnectedUrlRedacted(), err)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		nc.Close()
		return ErrClosed
	}
	b.cfg, b.nc, b.js = cfg, nc, js
	b.streams = streamCache{b: b, known: map[string]*streamCall{}}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.inited = true
	b.log.Debug("connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerVersion(), "group", cfg.Group)
	return nil
}

// connect opens the connection, within ctx's deadline (at most
// connectTimeout per server).
func (b *Broker) connect(ctx context.Context, cfg settings) (*nats.Conn, error) {
	timeout := connectTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("pubsub.jetstream: connect: %w", context.DeadlineExceeded)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("disconnected from the NATS server; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info("reconnected to the NATS server", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Warn("NATS connection error", "subject", subject, "error", err)
		}),
	}
	switch {
	case cfg.JWT != "":
		opts = append(opts, nats.UserJWTAndSeed(cfg.JWT, cfg.SeedKey))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.TLSClientCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSClientCert, cfg.TLSClientKey))
	}
	if cfg.TLSCACert != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCACert))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	// nats.Connect takes no ctx: run it aside so that a cancelled ctx
	// returns at once; a connection made after that is closed.
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(cfg.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("pubsub.jetstream: connect to %s: %w", redactURL(cfg.URL), r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("pubsub.jetstream: connect to %s: %w", redactURL(cfg.URL), ctx.Err())
	}
}

// redactURL hides the passwords and tokens of natsURL in messages.
func redactURL(urls string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if i := strings.Index(u, "://"); i >= 0 && i < at {
				u = u[:i+3] + "***" + u[at:]
			}
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// Features reports BULK_PUBLISH and MESSAGE_TTL.
func (b *Broker) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureBulkPublish, pubsub.FeatureMessageTTL}
}

func (b *Broker) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return ErrClosed
	case !b.inited:
		return errors.New("pubsub.jetstream: broker is not initialised")
	}
	return nil
}

// Publish stores the message in the topic's stream and returns once the
// server has acknowledged it.
func (b *Broker) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := b.usable(); err != nil {
		return err
	}
	if err := checkTopic(req.Topic); err != nil {
		return fmt.Errorf("pubsub.jetstream: publish: %w", err)
	}
	for attempt := 0; ; attempt++ {
		ref, err := b.streams.get(ctx, req.Topic)
		if err != nil {
			return err
		}
		msg, opts, err := b.message(ref, req.Topic, req.Data, req.Metadata)
		if err != nil {
			return err
		}
		_, err = b.js.PublishMsg(ctx, msg, opts...)
		if err == nil {
			return nil
		}
		if attempt == 0 && errors.Is(err, jetstream.ErrNoStreamResponse) && ctx.Err() == nil {
			// No stream took the message: it may have been deleted since
			// it was looked up. Look again (creating it) once.
			b.streams.forget(req.Topic)
			continue
		}
		return fmt.Errorf("pubsub.jetstream: publish to %q: %w", req.Topic, err)
	}
}

// BulkPublish publishes the entries without waiting for each PubAck in
// turn, then waits for them all; entries the server refuses, or whose
// PubAck does not come before ctx ends, are reported one by one.
func (b *Broker) BulkPublish(ctx context.Context, req *pubsub.BulkPublishRequest) (pubsub.BulkPublishResponse, error) {
	var resp pubsub.BulkPublishResponse
	if err := b.usable(); err != nil {
		return resp, err
	}
	if len(req.Entries) == 0 {
		return resp, nil
	}
	if err := ctx.Err(); err != nil {
		return resp, err
	}
	if err := checkTopic(req.Topic); err != nil {
		return resp, fmt.Errorf("pubsub.jetstream: bulk publish: %w", err)
	}
	ref, err := b.streams.get(ctx, req.Topic)
	if err != nil {
		return resp, err
	}
	fail := func(id string, err error) {
		resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{
			EntryID: id,
			Error:   fmt.Errorf("pubsub.jetstream: publish to %q: %w", req.Topic, err),
		})
	}
	futures := make([]jetstream.PubAckFuture, len(req.Entries))
	for i, e := range req.Entries {
		md := e.Metadata
		if len(req.Metadata) > 0 {
			md = maps.Clone(req.Metadata)
			maps.Copy(md, e.Metadata)
		}
		msg, opts, err := b.message(ref, req.Topic, e.Data, md)
		if err == nil {
			futures[i], err = b.js.PublishMsgAsync(msg, opts...)
		}
		if err != nil {
			fail(e.EntryID, err)
		}
	}
	noStream := false
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			noStream = noStream || errors.Is(err, nats.ErrNoResponders)
			fail(req.Entries[i].EntryID, err)
		case <-ctx.Done():
			fail(req.Entries[i].EntryID, ctx.Err())
		}
	}
	if noStream {
		b.streams.forget(req.Topic)
	}
	return resp, nil
}

// message builds the NATS message of one publish: the payload, the
// metadata as headers, the expiry of a ttlInSeconds, and the CloudEvent id
// as the message id for de-duplication.
func (b *Broker) message(ref streamRef, topic string, data []byte, md map[string]string) (*nats.Msg, []jetstream.PublishOpt, error) {
	msg := &nats.Msg{Subject: topic, Data: data}
	var opts []jetstream.PublishOpt
	if len(md) > 0 {
		msg.Header = make(nats.Header, len(md)+1)
		if err := setMetadata(msg.Header, md); err != nil {
			return nil, nil, fmt.Errorf("pubsub.jetstream: publish to %q: %w", topic, err)
		}
		if v, ok := lookupFold(md, "ttlInSeconds"); ok && strings.TrimSpace(v) != "" {
			secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || secs <= 0 {
				return nil, nil, fmt.Errorf("pubsub.jetstream: publish to %q: metadata ttlInSeconds %q is not a positive number of seconds", topic, v)
			}
			ttl := time.Duration(secs) * time.Second
			msg.Header.Set(expiresHeader, strconv.FormatInt(time.Now().Add(ttl).UnixMilli(), 10))
			if ref.ttl {
				opts = append(opts, jetstream.WithMsgTTL(ttl))
			}
		}
	}
	if id := cloudEventID(data); id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	return msg, opts, nil
}

func lookupFold(md map[string]string, key string) (string, bool) {
	if v, ok := md[key]; ok {
		return v, true
	}
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// Close ends every subscription, waits for their goroutines (running
// handlers included, whose ctx ends; their messages are handed back to the
// group at once), flushes the acknowledgements and closes the connection.
// It is idempotent.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	inited := b.inited
	b.mu.Unlock()
	if !inited {
		return nil
	}
	b.cancel()
	b.wg.Wait()
	if err := b.nc.FlushTimeout(flushTimeout); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Debug("flushing before closing", "error", err)
	}
	b.nc.Close()
	return nil
}
