// Package redis is the configuration.redis component: configuration items
// kept as Redis strings, in Dapr's layout so that daprd and Mecha read the
// same data.
//
// Each item is one Redis string key whose value is "value||version" (the
// version is optional: a plain "value" has an empty version), as Dapr's
// configuration.redis documents:
//
//	SET orderTimeout "30s||7"
//
// Like Dapr, the value is the text before the first "||" and the version the
// text after it (up to a further "||"), items whose value is empty are
// treated as absent, and keys of other types are skipped. Reading every item
// scans the database for string keys (SCAN ... TYPE string, Redis 6+).
//
// Subscriptions use Redis keyspace notifications: a SUBSCRIBE to
// __keyspace@<db>__:<key> per watched key, or a PSUBSCRIBE to
// __keyspace@<db>__:* for every key, on a connection of their own. A
// notification only says that a key changed, so the component then reads
// the key: what subscribers receive is the item as it is now, and an item
// that no longer exists (DEL, expiry, eviction) arrives with an empty value.
// Notifications must be enabled on the server: on every Subscribe the
// component reads notify-keyspace-events and, if it lacks keyspace events
// for string and generic commands, adds "K$gxe" with CONFIG SET (merging
// with what is set, unlike Dapr's blunt "KA"). Where CONFIG is not allowed
// (managed Redis), set notify-keyspace-events to at least "K$gx" in the
// server's configuration; the component logs a warning when it cannot check.
// Keyspace notifications are fire-and-forget: changes made while the
// subscription's connection is being re-established are not reported.
//
// Metadata: see settings in metadata.go (redisHost, redisPassword, redisDB,
// enableTLS, ...).
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/internal/watch"
	"github.com/mecha-dev/mecha/components/internal/redisconn"
)

const (
	// separator splits "value||version".
	separator = "||"
	// scanBatch is the COUNT hint of SCAN and the size of one MGET.
	scanBatch = 500
	// pingEvery is how long a quiet subscription connection waits before
	// checking that the connection is alive.
	pingEvery = 30 * time.Second
)

// Store is the Redis configuration store.
type Store struct {
	log       *slog.Logger
	client    *goredis.Client
	addr      string
	channel   string // "__keyspace@<db>__:"
	timeout   time.Duration
	subs      *watch.Set
	closeOnce sync.Once
	closeErr  error
}

var _ configuration.Store = (*Store)(nil)

// New returns an uninitialised store. It does no I/O.
func New(deps components.Deps) configuration.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log, subs: watch.NewSet(log)}
}

// Init connects to Redis.
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseSettings(md)
	if err != nil {
		return fmt.Errorf("redis: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		s.log.Warn(w)
	}
	client, err := redisconn.Connect(ctx, s.log, cfg.Settings)
	if err != nil {
		return err
	}
	s.client, s.addr = client, cfg.Addr
	s.channel = "__keyspace@" + strconv.Itoa(cfg.DB) + "__:"
	s.timeout = max(cfg.DialTimeout+cfg.ReadTimeout, 5*time.Second)
	return nil
}

// parseValue splits Dapr's "value||version"; ok is false for an empty value,
// which Dapr treats as no item.
func parseValue(raw string) (*configuration.Item, bool) {
	value, rest, _ := strings.Cut(raw, separator)
	if value == "" {
		return nil, false
	}
	version, _, _ := strings.Cut(rest, separator)
	return &configuration.Item{Value: value, Version: version, Metadata: map[string]string{}}, true
}

// Get reads keys with MGET, or every string key with SCAN.
func (s *Store) Get(ctx context.Context, req configuration.GetRequest) (map[string]*configuration.Item, error) {
	if s.client == nil {
		return nil, errors.New("redis: store is not initialised")
	}
	items := map[string]*configuration.Item{}
	if len(req.Keys) > 0 {
		return items, s.mget(ctx, req.Keys, items)
	}
	var cursor uint64
	for {
		keys, next, err := s.client.ScanType(ctx, cursor, "*", scanBatch, "string").Result()
		if err != nil {
			return nil, wrap(ctx, "scan", err)
		}
		if len(keys) > 0 {
			if err := s.mget(ctx, keys, items); err != nil {
				return nil, err
			}
		}
		if next == 0 {
			return items, nil
		}
		cursor = next
	}
}

func (s *Store) mget(ctx context.Context, keys []string, into map[string]*configuration.Item) error {
	for start := 0; start < len(keys); start += scanBatch {
		batch := keys[start:min(start+scanBatch, len(keys))]
		vals, err := s.client.MGet(ctx, batch...).Result()
		if err != nil {
			return wrap(ctx, "mget", err)
		}
		for i, v := range vals {
			// MGET answers nil for missing keys and for keys of other types.
			str, ok := v.(string)
			if !ok {
				continue
			}
			if it, ok := parseValue(str); ok {
				into[batch[i]] = it
			}
		}
	}
	return nil
}

// current reads key as it is now: a missing key, or a string whose value is
// empty, is a deleted item; ok is false for a key of another type (a hash
// of a state store sharing the database), which is no configuration item.
func (s *Store) current(ctx context.Context, key string) (_ *configuration.Item, ok bool, _ error) {
	raw, err := s.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return &configuration.Item{}, true, nil
	case err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE"):
		return nil, false, nil
	case err != nil:
		return nil, false, wrap(ctx, "get "+key, err)
	}
	if it, ok := parseValue(raw); ok {
		return it, true, nil
	}
	return &configuration.Item{}, true, nil
}

// Subscribe listens to the keyspace notifications of the watched keys.
func (s *Store) Subscribe(ctx context.Context, req configuration.SubscribeRequest, handler configuration.UpdateHandler) (string, error) {
	if s.client == nil {
		return "", errors.New("redis: store is not initialised")
	}
	sub, err := s.subs.Add(ctx, req, handler)
	if err != nil {
		return "", err
	}
	setupCtx, cancel := context.WithTimeout(sub.Context(), s.timeout)
	defer cancel()
	s.ensureKeyspaceEvents(setupCtx)

	var ps *goredis.PubSub
	confirmations := 1
	if keys := sub.Keys(); keys == nil {
		ps = s.client.PSubscribe(setupCtx, s.channel+"*")
	} else {
		channels := make([]string, len(keys))
		for i, k := range keys {
			channels[i] = s.channel + k
		}
		ps = s.client.Subscribe(setupCtx, channels...)
		confirmations = len(channels)
	}
	// Changes made after Subscribe returns must be reported: wait until
	// Redis has confirmed every channel.
	for range confirmations {
		msg, err := ps.ReceiveTimeout(setupCtx, s.timeout)
		if err == nil {
			if _, ok := msg.(*goredis.Subscription); !ok {
				err = fmt.Errorf("unexpected %T while subscribing", msg)
			}
		}
		if err != nil {
			_ = ps.Close()
			_ = s.subs.Stop(sub.ID)
			return "", wrap(setupCtx, "subscribe to keyspace notifications", err)
		}
	}
	sub.Go(func(ctx context.Context) {
		// Closing the PubSub is what unblocks a pending read when the
		// subscription ends.
		closed := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = ps.Close()
			close(closed)
		})
		s.watch(ctx, sub, ps)
		if stop() {
			_ = ps.Close()
		} else {
			<-closed
		}
	})
	s.log.Debug("configuration subscription started", "subscription", sub.ID, "keys", sub.Keys())
	return sub.ID, nil
}

// watch turns keyspace notifications into updates until ctx ends.
func (s *Store) watch(ctx context.Context, sub *watch.Sub, ps *goredis.PubSub) {
	backoff := 100 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet for a while: check the connection is alive (a
				// failed ping makes the next receive reconnect).
				if perr := ps.Ping(ctx); perr != nil && ctx.Err() == nil {
					s.log.Warn("configuration subscription connection lost; reconnecting", "subscription", sub.ID, "error", perr)
				}
				continue
			}
			s.log.Warn("configuration subscription receive failed; retrying", "subscription", sub.ID, "error", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		m, ok := msg.(*goredis.Message)
		if !ok {
			continue // subscription confirmations after a reconnect, pongs
		}
		key, ok := strings.CutPrefix(m.Channel, s.channel)
		if !ok || !sub.Watches(key) {
			continue
		}
		switch m.Payload {
		case "expire", "persist":
			continue // only the key's TTL changed
		}
		item, ok, err := s.current(ctx, key)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("reading a changed configuration item failed", "subscription", sub.ID, "key", key, "error", err)
			}
			continue
		}
		if ok {
			sub.Deliver(map[string]*configuration.Item{key: item})
		}
	}
}

// ensureKeyspaceEvents makes sure the server publishes the keyspace
// notifications subscriptions rely on, merging flags into the current
// setting (other programs on the server may rely on theirs).
func (s *Store) ensureKeyspaceEvents(ctx context.Context) {
	res, err := s.client.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		s.log.Warn("cannot read notify-keyspace-events; make sure it includes K$gx or subscriptions receive nothing", "error", err)
		return
	}
	cur := res["notify-keyspace-events"]
	want := mergeFlags(cur)
	if want == cur {
		return
	}
	if err := s.client.ConfigSet(ctx, "notify-keyspace-events", want).Err(); err != nil {
		s.log.Warn("cannot enable keyspace notifications; set notify-keyspace-events to include K$gx in the server configuration", "current", cur, "error", err)
		return
	}
	s.log.Info("enabled redis keyspace notifications", "notify-keyspace-events", want, "was", cur)
}

// mergeFlags adds the keyspace flags this component needs to a
// notify-keyspace-events value: K (keyspace channel) and the classes of
// string commands ($), generic commands such as DEL (g), expiry (x) and
// eviction (e). "A" already covers the classes.
func mergeFlags(cur string) string {
	need := "K$gxe"
	if strings.Contains(cur, "A") {
		need = "K"
	}
	out := cur
	for _, f := range need {
		if !strings.ContainsRune(out, f) {
			out += string(f)
		}
	}
	return out
}

// Unsubscribe ends the subscription id.
func (s *Store) Unsubscribe(_ context.Context, id string) error {
	return s.subs.Stop(id)
}

// Close ends every subscription and closes the client.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.subs.Close()
		if s.client != nil {
			s.closeErr = s.client.Close()
		}
	})
	return s.closeErr
}

// wrap adds the operation to err, keeping context errors recognisable.
func wrap(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("redis %s: %w (%w)", op, ctxErr, err)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}
