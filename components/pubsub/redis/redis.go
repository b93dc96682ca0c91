// Package redis is the pubsub.redis component: a broker on Redis Streams
// with consumer groups, kept compatible with Dapr's so that daprd and Mecha
// sidecars can publish and subscribe on the same Redis.
//
// The layout is Dapr's: a topic is the stream of the same name; a message
// is an entry with the field "data" (the payload's bytes) and, when the
// publish had metadata, the field "metadata" (a JSON object of strings).
// The consumer group is the consumerID metadata (the app id), created with
// XGROUP CREATE ... 0 MKSTREAM when a sidecar subscribes, so a new group
// starts at the beginning of the stream, as in Dapr.
//
// Each sidecar reads with XREADGROUP as a consumer of its own (consumerID
// plus a random suffix, so the pending entries of a dead sidecar can be
// told apart) and acknowledges with XACK when the handler succeeds. A
// failed handler leaves the entry pending; every redeliverInterval, each
// subscription claims (XAUTOCLAIM) the entries of its group that have been
// pending longer than processingTimeout, whoever held them, and delivers
// them again. That one mechanism gives redelivery after a nack (with
// processingTimeout as the back-off), after a crash, and after an outage
// in which an entry was read but never handled: delivery is at least once.
//
// Blocking reads run on a connection of their own per subscription, closed
// when the subscription ends, so that ending it is immediate and blocked
// reads never starve publishes of pooled connections.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
	"github.com/mecha-dev/mecha/components/pubsub"
)

// Stream entry fields, Dapr's.
const (
	fieldData     = "data"
	fieldMetadata = "metadata"
)

// blockFor is how long one XREADGROUP waits for new entries. Ending a
// subscription closes its connection, so this bounds nothing but idle
// round trips.
const blockFor = 5 * time.Second

// Read errors are retried after a back-off from minReadBackOff doubling to
// maxReadBackOff, so that an unreachable Redis is not hammered.
const (
	minReadBackOff = 100 * time.Millisecond
	maxReadBackOff = 2 * time.Second
)

// ackTimeout bounds an XACK, which runs even while the subscription ends.
const ackTimeout = 5 * time.Second

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("pubsub.redis: broker is closed")

// delConsumerScript removes consumer ARGV[2] from group ARGV[1] of stream
// KEYS[1] if it holds no pending entry (which would be lost with it).
const delConsumerScript = `
local p = redis.call("XPENDING", KEYS[1], ARGV[1], "-", "+", 1, ARGV[2])
if #p == 0 then return redis.call("XGROUP", "DELCONSUMER", KEYS[1], ARGV[1], ARGV[2]) end
return -1`

// Broker is the Redis Streams broker.
type Broker struct {
	log *slog.Logger

	cfg      settings
	client   *goredis.Client
	consumer string // this sidecar's consumer name in every group
	delCons  *goredis.Script

	// ctx ends on Close; every subscription's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	inited bool
	closed bool
	topics map[string]bool // subscribed at some point: consumers to remove on Close
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
	return &Broker{log: log, delCons: goredis.NewScript(delConsumerScript), topics: map[string]bool{}}
}

// Init decodes the metadata (see settings for the properties), connects and
// pings Redis. It fails when Redis does not answer before ctx is done, or
// within dialTimeout+readTimeout (at least 10s) when ctx has no deadline.
func (b *Broker) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("pubsub.redis: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		b.log.Warn(w)
	}
	b.mu.Lock()
	if b.closed || b.inited {
		b.mu.Unlock()
		return errors.New("pubsub.redis: Init called twice or after Close")
	}
	b.mu.Unlock()
	client, err := redisconn.Connect(ctx, b.log, cfg.Settings)
	if err != nil {
		return fmt.Errorf("pubsub.%w", err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = client.Close()
		return ErrClosed
	}
	b.cfg, b.client = cfg, client
	b.consumer = cfg.ConsumerID + "-" + hex.EncodeToString(suffix)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.inited = true
	if !cfg.redelivers() {
		b.log.Warn("redelivery is disabled (processingTimeout or redeliverInterval is 0): a message whose handler fails is not delivered again")
	}
	return nil
}

// Features reports BULK_PUBLISH.
func (b *Broker) Features() []pubsub.Feature {
	return []pubsub.Feature{pubsub.FeatureBulkPublish}
}

func (b *Broker) usable() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return ErrClosed
	case !b.inited:
		return errors.New("pubsub.redis: broker is not initialised")
	}
	return nil
}

// Publish adds the message to the topic's stream (XADD), trimming it as
// maxLenApprox and streamTTL say.
func (b *Broker) Publish(ctx context.Context, req *pubsub.PublishRequest) error {
	if err := b.usable(); err != nil {
		return err
	}
	args, err := b.xadd(req.Topic, req.Data, req.Metadata)
	if err != nil {
		return err
	}
	if b.cfg.MaxLenApprox > 0 && b.cfg.StreamTTL > 0 {
		_, err = b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			p.XAdd(ctx, args)
			p.XTrimMinIDApprox(ctx, req.Topic, b.minID(), 0)
			return nil
		})
	} else {
		err = b.client.XAdd(ctx, args).Err()
	}
	if err != nil {
		return fmt.Errorf("pubsub.redis: publish to %q: %w", req.Topic, err)
	}
	return nil
}

// BulkPublish adds the entries in one pipeline; entries Redis refuses are
// reported one by one.
func (b *Broker) BulkPublish(ctx context.Context, req *pubsub.BulkPublishRequest) (pubsub.BulkPublishResponse, error) {
	var resp pubsub.BulkPublishResponse
	if err := b.usable(); err != nil {
		return resp, err
	}
	if len(req.Entries) == 0 {
		return resp, nil
	}
	cmds := make([]*goredis.StringCmd, len(req.Entries))
	pipe := b.client.Pipeline()
	for i, e := range req.Entries {
		md := e.Metadata
		if len(req.Metadata) > 0 {
			md = maps.Clone(req.Metadata)
			maps.Copy(md, e.Metadata)
		}
		args, err := b.xadd(req.Topic, e.Data, md)
		if err != nil {
			resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{EntryID: e.EntryID, Error: err})
			continue
		}
		cmds[i] = pipe.XAdd(ctx, args)
	}
	if b.cfg.MaxLenApprox > 0 && b.cfg.StreamTTL > 0 {
		pipe.XTrimMinIDApprox(ctx, req.Topic, b.minID(), 0)
	}
	_, _ = pipe.Exec(ctx) // errors are read per command below
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		if err := cmd.Err(); err != nil {
			resp.FailedEntries = append(resp.FailedEntries, pubsub.BulkFailedEntry{
				EntryID: req.Entries[i].EntryID,
				Error:   fmt.Errorf("pubsub.redis: publish to %q: %w", req.Topic, err),
			})
		}
	}
	return resp, nil
}

// xadd builds the XADD of one message in Dapr's layout.
func (b *Broker) xadd(topic string, data []byte, md map[string]string) (*goredis.XAddArgs, error) {
	if topic == "" {
		return nil, errors.New("pubsub.redis: publish: topic is empty")
	}
	if data == nil {
		data = []byte{}
	}
	values := []any{fieldData, data}
	if len(md) > 0 {
		j, err := json.Marshal(md)
		if err != nil {
			return nil, fmt.Errorf("pubsub.redis: publish: metadata: %w", err)
		}
		values = append(values, fieldMetadata, j)
	}
	args := &goredis.XAddArgs{Stream: topic, Values: values}
	switch {
	case b.cfg.MaxLenApprox > 0:
		args.MaxLen, args.Approx = b.cfg.MaxLenApprox, true
	case b.cfg.StreamTTL > 0:
		args.MinID, args.Approx = b.minID(), true
	}
	return args, nil
}

// minID is the stream id before which entries are older than streamTTL.
func (b *Broker) minID() string {
	return strconv.FormatInt(time.Now().Add(-b.cfg.StreamTTL).UnixMilli(), 10) + "-0"
}

// Subscribe creates the consumer group on the topic's stream if needed and
// starts delivering: a reader (XREADGROUP), a reclaimer (XAUTOCLAIM, unless
// redelivery is disabled) and `concurrency` handler goroutines, all ending
// when ctx does or on Close.
func (b *Broker) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, handler pubsub.Handler) error {
	if err := b.usable(); err != nil {
		return err
	}
	if req.Topic == "" {
		return errors.New("pubsub.redis: subscribe: topic is empty")
	}
	if handler == nil {
		return errors.New("pubsub.redis: subscribe: handler is nil")
	}
	if err := b.createGroup(ctx, req.Topic); err != nil {
		return err
	}
	opts := b.cfg.Options()
	opts.PoolSize, opts.MinIdleConns, opts.MaxRetries = 1, 0, -1
	s := &subscription{
		b:        b,
		topic:    req.Topic,
		handler:  handler,
		reader:   goredis.NewClient(opts),
		queue:    make(chan goredis.XMessage, b.cfg.QueueDepth),
		inflight: map[string]bool{},
	}

	b.mu.Lock()
	defer b.mu.Unlock() // held so that Close cannot run between the check and wg.Add
	if b.closed {
		_ = s.reader.Close()
		return ErrClosed
	}
	b.topics[req.Topic] = true
	var cancel context.CancelFunc
	s.ctx, cancel = context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	b.wg.Add(2 + b.cfg.Concurrency)
	go func() {
		defer b.wg.Done()
		<-s.ctx.Done()
		stop()
		_ = s.reader.Close() // interrupts a blocked XREADGROUP
	}()
	go func() {
		defer b.wg.Done()
		s.read()
	}()
	for range b.cfg.Concurrency {
		go func() {
			defer b.wg.Done()
			s.work()
		}()
	}
	if b.cfg.redelivers() {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			s.reclaim()
		}()
	}
	return nil
}

// createGroup runs XGROUP CREATE <topic> <consumerID> 0 MKSTREAM; a group
// that exists already is fine.
func (b *Broker) createGroup(ctx context.Context, topic string) error {
	err := b.client.XGroupCreateMkStream(ctx, topic, b.cfg.ConsumerID, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("pubsub.redis: create consumer group %q on %q: %w", b.cfg.ConsumerID, topic, err)
	}
	return nil
}

// Close ends every subscription, waits for their goroutines (running
// handlers included, whose ctx ends), removes this sidecar's consumer from
// the groups where it holds no pending entry, and closes the connections.
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for topic := range b.topics {
		if err := b.delCons.Run(ctx, b.client, []string{topic}, b.cfg.ConsumerID, b.consumer).Err(); err != nil && !errors.Is(err, goredis.Nil) {
			b.log.Debug("could not remove the consumer from its group", "topic", topic, "consumer", b.consumer, "error", err)
		}
	}
	return b.client.Close()
}

// subscription is one Subscribe call.
type subscription struct {
	b       *Broker
	topic   string
	handler pubsub.Handler
	ctx     context.Context
	reader  *goredis.Client // for XREADGROUP only; closed when ctx ends
	queue   chan goredis.XMessage

	mu       sync.Mutex
	inflight map[string]bool // entry ids queued or being handled here
}

// read fetches new entries (XREADGROUP >) and queues them for the handler
// goroutines, backing off while Redis fails.
func (s *subscription) read() {
	b := s.b
	wait := time.Duration(0)
	failing := false
	for s.ctx.Err() == nil {
		streams, err := s.reader.XReadGroup(s.ctx, &goredis.XReadGroupArgs{
			Group:    b.cfg.ConsumerID,
			Consumer: b.consumer,
			Streams:  []string{s.topic, ">"},
			Count:    int64(b.cfg.QueueDepth),
			Block:    blockFor,
		}).Result()
		switch {
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, goredis.Nil):
			continue // nothing new
		case err != nil:
			if !failing {
				b.log.Warn("cannot read from the stream; retrying", "topic", s.topic, "error", err)
				failing = true
			}
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				// The stream or group is gone (deleted, or Redis lost its
				// data): create them again and go on.
				if err := b.createGroup(s.ctx, s.topic); err != nil {
					b.log.Debug("recreating the consumer group failed", "topic", s.topic, "error", err)
				}
			}
			wait = min(max(2*wait, minReadBackOff), maxReadBackOff)
			if !sleep(s.ctx, wait) {
				return
			}
			continue
		}
		if failing {
			b.log.Info("reading from the stream again", "topic", s.topic)
			failing = false
		}
		wait = 0
		for _, st := range streams {
			s.enqueue(st.Messages)
		}
	}
}

// reclaim claims, every redeliverInterval, the group's entries pending for
// longer than processingTimeout (XAUTOCLAIM) and queues them again.
func (s *subscription) reclaim() {
	t := time.NewTicker(s.b.cfg.RedeliverInterval)
	defer t.Stop()
	for {
		s.reclaimOnce()
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *subscription) reclaimOnce() {
	b := s.b
	start := "0-0"
	for s.ctx.Err() == nil {
		msgs, next, err := b.client.XAutoClaim(s.ctx, &goredis.XAutoClaimArgs{
			Stream:   s.topic,
			Group:    b.cfg.ConsumerID,
			Consumer: b.consumer,
			MinIdle:  b.cfg.ProcessingTimeout,
			Start:    start,
			Count:    int64(b.cfg.QueueDepth),
		}).Result()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, goredis.Nil) {
				b.log.Debug("cannot claim pending entries", "topic", s.topic, "error", err)
			}
			return
		}
		var live []goredis.XMessage
		for _, m := range msgs {
			if m.Values == nil {
				// Redis 6.2 reports an entry trimmed from the stream while
				// pending as empty: acknowledge it so it stops coming back.
				s.ack(m.ID)
				continue
			}
			live = append(live, m)
		}
		if len(live) > 0 {
			b.log.Debug("redelivering pending entries", "topic", s.topic, "count", len(live))
			s.enqueue(live)
		}
		if next == "0-0" || next == "" || next == start {
			return
		}
		start = next
	}
}

// enqueue queues the entries not already queued or being handled here (a
// claim may return those), blocking while the queue is full.
func (s *subscription) enqueue(msgs []goredis.XMessage) {
	for _, m := range msgs {
		s.mu.Lock()
		dup := s.inflight[m.ID]
		s.inflight[m.ID] = true
		s.mu.Unlock()
		if dup {
			continue
		}
		select {
		case s.queue <- m:
		case <-s.ctx.Done():
			return // the entry stays pending: claimed again later
		}
	}
}

// work is one handler goroutine.
func (s *subscription) work() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-s.queue:
			s.handle(m)
		}
	}
}

// handle delivers one entry: XACK when the handler succeeds (or always,
// with ackOnError); otherwise it stays pending and is claimed again after
// processingTimeout. Nothing is delivered once the subscription has ended.
func (s *subscription) handle(m goredis.XMessage) {
	defer func() {
		s.mu.Lock()
		delete(s.inflight, m.ID)
		s.mu.Unlock()
	}()
	if s.ctx.Err() != nil {
		return
	}
	b := s.b
	ctx := s.ctx
	if b.cfg.redelivers() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.ProcessingTimeout)
		defer cancel()
	}
	err := s.call(ctx, message(s.topic, m, b.log))
	if err != nil {
		b.log.Debug("handler failed; the entry stays pending", "topic", s.topic, "id", m.ID, "error", err)
		if !b.cfg.AckOnError {
			return
		}
	}
	s.ack(m.ID)
}

// ack acknowledges an entry, even while the subscription ends.
func (s *subscription) ack(id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), ackTimeout)
	defer cancel()
	if err := s.b.client.XAck(ctx, s.topic, s.b.cfg.ConsumerID, id).Err(); err != nil {
		s.b.log.Warn("cannot acknowledge an entry; it will be delivered again", "topic", s.topic, "id", id, "error", err)
	}
}

// call runs the handler, turning a panic into an error so that one bad
// message cannot take the sidecar down.
func (s *subscription) call(ctx context.Context, msg *pubsub.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("pubsub.redis: handler panicked: %v", p)
			s.b.log.Error("handler panicked; the entry stays pending", "topic", s.topic, "panic", p)
		}
	}()
	return s.handler(ctx, msg)
}

// message decodes an entry in Dapr's layout.
func message(topic string, m goredis.XMessage, log *slog.Logger) *pubsub.Message {
	msg := &pubsub.Message{Topic: topic, Data: []byte{}}
	switch v := m.Values[fieldData].(type) {
	case string:
		msg.Data = []byte(v)
	case []byte:
		msg.Data = v
	}
	if v, ok := m.Values[fieldMetadata].(string); ok && v != "" {
		if err := json.Unmarshal([]byte(v), &msg.Metadata); err != nil {
			log.Warn("ignoring the entry's metadata: not a JSON object of strings", "topic", topic, "id", m.ID, "error", err)
		}
	}
	return msg
}

// sleep waits for d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
