// Package postgres is the configuration.postgresql component: items are rows
// of a table, in the shape Dapr's configuration.postgresql documents:
//
//	CREATE TABLE configuration (KEY VARCHAR NOT NULL, VALUE VARCHAR NOT NULL, VERSION VARCHAR NOT NULL, METADATA JSON)
//
// # Subscriptions
//
// Changes reach subscribers through LISTEN/NOTIFY, as in Dapr: a trigger on
// the table calls pg_notify on a channel, and every subscription LISTENs to
// it on a connection of its own. Dapr leaves the trigger to the user and
// requires the channel in the subscription's metadata (pgNotifyChannel);
// that works here unchanged, with a trigger such as Dapr's documented
// notify_event(), whose payload is {"action": TG_OP, "data": row_to_json(row)}.
//
// For convenience, when the table does not exist, Init creates it (with KEY
// as primary key) together with two triggers:
//
//   - mecha_configuration_notify, which NOTIFYs channel "mecha_cfg_<table>"
//     with the changed key and action only (pg_notify payloads are limited
//     to 8000 bytes, so large values would make writes fail otherwise); the
//     subscriber then reads the row. Subscriptions without pgNotifyChannel
//     use this channel.
//   - mecha_configuration_version, which gives a row inserted with an empty
//     version, or updated without a new one, the next value of the sequence
//     <table>_version_seq, so writers may leave versions alone.
//
// Tables created by someone else are left exactly as they are. A DELETE
// (action "DELETE") is reported as an item with an empty value, whichever
// trigger sent it. Notifications sent while a subscription's connection is
// being re-established are lost, as with any LISTEN.
//
// Metadata: connectionString (required), table (default "configuration"),
// timeout, maxConns, connectionMaxIdleTime; see config in metadata.go.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/components/configuration/internal/watch"
)

const (
	notifyTrigger  = "mecha_configuration_notify"
	versionTrigger = "mecha_configuration_version"
	// schemaLock serialises schema setup across sidecars (an advisory lock
	// key: hashtext is stable).
	schemaLock = "SELECT pg_advisory_xact_lock(hashtext('mecha.configuration.schema'))"
	// pgNotifyChannel is Dapr's subscription metadata key.
	pgNotifyChannel = "pgNotifyChannel"
)

// Store is the PostgreSQL configuration store.
type Store struct {
	log     *slog.Logger
	cfg     config
	table   string // quoted
	pool    *pgxpool.Pool
	channel string // the trigger's channel; "" when the table has none of ours
	subs    *watch.Set

	closeOnce sync.Once
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

// Init connects, and creates the table with its triggers when missing.
func (s *Store) Init(ctx context.Context, md components.Metadata) error {
	cfg, warnings, err := parseConfig(md)
	if err != nil {
		return fmt.Errorf("postgresql: invalid metadata: %w", err)
	}
	for _, w := range warnings {
		s.log.Warn(w)
	}
	s.cfg, s.table = cfg, ident(cfg.Table)
	pcfg, err := cfg.PoolConfig()
	if err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = int32(cfg.MaxConns)
	}
	if cfg.MaxConnIdleTime > 0 {
		pcfg.MaxConnIdleTime = cfg.MaxConnIdleTime
	}
	var created bool
	pool, err := cfg.Open(ctx, pcfg, func(ctx context.Context, pool *pgxpool.Pool) (err error) {
		created, err = s.setup(ctx, pool)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	s.pool = pool
	s.log.Info("postgresql configuration store ready", "table", cfg.Table, "created", created, "notifyChannel", s.channel)
	return nil
}

// setup creates the table and triggers when the table is missing, and finds
// out whether the table carries Mecha's notify trigger.
func (s *Store) setup(ctx context.Context, pool *pgxpool.Pool) (created bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, schemaLock); err != nil {
		return false, fmt.Errorf("lock schema setup: %w", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.table).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up table %s: %w", s.cfg.Table, err)
	}
	if !exists {
		for _, stmt := range s.schema() {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return false, fmt.Errorf("create table %s: %w", s.cfg.Table, err)
			}
		}
		created = true
	}
	var ours bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)", s.table, notifyTrigger).Scan(&ours); err != nil {
		return false, fmt.Errorf("look up triggers of %s: %w", s.cfg.Table, err)
	}
	if _, err := tx.Exec(ctx, "SELECT key::text, value::text, version::text, metadata::text FROM "+s.table+" LIMIT 0"); err != nil {
		return false, fmt.Errorf("table %s lacks the columns key, value, version, metadata: %w", s.cfg.Table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("create table %s: %w", s.cfg.Table, err)
	}
	if ours {
		s.channel = defaultChannel(s.cfg.Table)
	}
	return created, nil
}

// sequenceName is <table>_version_seq, kept within the identifier limit.
func sequenceName(table string) string {
	schema, name, qualified := strings.Cut(table, ".")
	if !qualified {
		schema, name = "", table
	}
	const suffix = "_version_seq"
	if len(name)+len(suffix) > maxIdentifier {
		h := fnv.New32a()
		h.Write([]byte(name))
		name = fmt.Sprintf("%s_%08x", name[:maxIdentifier-len(suffix)-9], h.Sum32())
	}
	if schema == "" {
		return name + suffix
	}
	return schema + "." + name + suffix
}

// schema is the DDL for a table Mecha creates.
func (s *Store) schema() []string {
	seq := ident(sequenceName(s.cfg.Table))
	quote := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	return []string{
		`CREATE TABLE ` + s.table + ` (
	key      VARCHAR NOT NULL PRIMARY KEY,
	value    VARCHAR NOT NULL,
	version  VARCHAR NOT NULL DEFAULT '',
	metadata JSON
)`,
		`CREATE SEQUENCE IF NOT EXISTS ` + seq,
		`CREATE OR REPLACE FUNCTION mecha_configuration_version() RETURNS trigger AS $$
BEGIN
	IF NEW.version IS NULL OR NEW.version = '' OR (TG_OP = 'UPDATE' AND NEW.version = OLD.version) THEN
		NEW.version := nextval(TG_ARGV[0]::regclass)::text;
	END IF;
	RETURN NEW;
END;
$$ LANGUAGE plpgsql`,
		`CREATE OR REPLACE FUNCTION mecha_configuration_notify() RETURNS trigger AS $$
BEGIN
	IF TG_OP = 'DELETE' THEN
		PERFORM pg_notify(TG_ARGV[0], json_build_object('table', TG_TABLE_NAME, 'action', 'DELETE', 'data', json_build_object('key', OLD.key))::text);
		RETURN NULL;
	END IF;
	IF TG_OP = 'UPDATE' AND OLD.key <> NEW.key THEN
		PERFORM pg_notify(TG_ARGV[0], json_build_object('table', TG_TABLE_NAME, 'action', 'DELETE', 'data', json_build_object('key', OLD.key))::text);
	END IF;
	PERFORM pg_notify(TG_ARGV[0], json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', json_build_object('key', NEW.key))::text);
	RETURN NULL;
END;
$$ LANGUAGE plpgsql`,
		`CREATE TRIGGER ` + versionTrigger + ` BEFORE INSERT OR UPDATE ON ` + s.table +
			` FOR EACH ROW EXECUTE FUNCTION mecha_configuration_version(` + quote(seq) + `)`,
		`CREATE TRIGGER ` + notifyTrigger + ` AFTER INSERT OR UPDATE OR DELETE ON ` + s.table +
			` FOR EACH ROW EXECUTE FUNCTION mecha_configuration_notify(` + quote(defaultChannel(s.cfg.Table)) + `)`,
	}
}

// Get reads keys, or every item.
func (s *Store) Get(ctx context.Context, req configuration.GetRequest) (map[string]*configuration.Item, error) {
	if s.pool == nil {
		return nil, errors.New("postgresql: store is not initialised")
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	query := "SELECT key::text, value::text, version::text, metadata::text FROM " + s.table
	var args []any
	if len(req.Keys) > 0 {
		query += " WHERE key = ANY($1)"
		args = append(args, req.Keys)
	}
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("postgresql: read %s: %w", s.cfg.Table, err)
	}
	defer rows.Close()
	items := map[string]*configuration.Item{}
	for rows.Next() {
		var key string
		var value, version, md *string
		if err := rows.Scan(&key, &value, &version, &md); err != nil {
			return nil, fmt.Errorf("postgresql: read %s: %w", s.cfg.Table, err)
		}
		it := &configuration.Item{Value: deref(value), Version: deref(version)}
		if md != nil {
			it.Metadata = s.metadata(key, json.RawMessage(*md))
		}
		items[key] = it
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgresql: read %s: %w", s.cfg.Table, err)
	}
	return items, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// metadata decodes a JSON object (or a JSON string holding one) into
// strings; non-string values become their JSON text.
func (s *Store) metadata(key string, raw json.RawMessage) map[string]string {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = json.RawMessage(text)
	}
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		s.log.Warn("ignoring configuration metadata that is not a JSON object", "key", key, "error", err)
		return nil
	}
	md := make(map[string]string, len(obj))
	for k, v := range obj {
		md[k] = jsonText(v)
	}
	return md
}

// jsonText is a JSON string's content, or any other value's JSON text.
func jsonText(v json.RawMessage) string {
	var str string
	if json.Unmarshal(v, &str) == nil {
		return str
	}
	if string(v) == "null" {
		return ""
	}
	return string(v)
}

// Subscribe LISTENs on pgNotifyChannel (or the channel of Mecha's trigger)
// on a connection of the subscription's own.
func (s *Store) Subscribe(ctx context.Context, req configuration.SubscribeRequest, handler configuration.UpdateHandler) (string, error) {
	if s.pool == nil {
		return "", errors.New("postgresql: store is not initialised")
	}
	channel := s.channel
	for k, v := range req.Metadata {
		if strings.EqualFold(k, pgNotifyChannel) && v != "" {
			channel = v
		}
	}
	switch {
	case channel == "":
		return "", fmt.Errorf("unable to subscribe to '%s': the %s metadata attribute cannot be empty (the table has no trigger created by Mecha)", s.cfg.Table, pgNotifyChannel)
	case len(channel) > maxIdentifier:
		return "", fmt.Errorf("%s %q is longer than %d bytes", pgNotifyChannel, channel, maxIdentifier)
	}
	sub, err := s.subs.Add(ctx, req, handler)
	if err != nil {
		return "", err
	}
	setupCtx, cancel := context.WithTimeout(sub.Context(), s.cfg.Timeout)
	defer cancel()
	conn, err := s.listen(setupCtx, channel)
	if err != nil {
		_ = s.subs.Stop(sub.ID)
		return "", err
	}
	sub.Go(func(ctx context.Context) { s.watch(ctx, sub, conn, channel) })
	s.log.Debug("configuration subscription started", "subscription", sub.ID, "channel", channel, "keys", sub.Keys())
	return sub.ID, nil
}

// listen opens a connection outside the pool and LISTENs on channel.
func (s *Store) listen(ctx context.Context, channel string) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("postgresql: connect to listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("postgresql: listen %s: %w", channel, err)
	}
	return conn, nil
}

// watch turns notifications into updates until ctx ends, reconnecting when
// the connection breaks.
func (s *Store) watch(ctx context.Context, sub *watch.Sub, conn *pgx.Conn, channel string) {
	defer func() {
		if conn != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(cctx)
			cancel()
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		if conn == nil {
			var err error
			lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			conn, err = s.listen(lctx, channel)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("configuration subscription cannot listen; retrying", "subscription", sub.ID, "error", err, "backoff", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			s.log.Info("configuration subscription listening again", "subscription", sub.ID, "channel", channel)
			backoff = 100 * time.Millisecond
		}
		n, err := conn.WaitForNotification(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("configuration subscription connection lost; reconnecting", "subscription", sub.ID, "error", err)
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(cctx)
			cancel()
			conn = nil
			continue
		}
		key, item, ok := s.parseNotification(ctx, sub, n.Payload)
		if ok {
			sub.Deliver(map[string]*configuration.Item{key: item})
		}
	}
}

// notification is the payload of Dapr's documented trigger and of Mecha's:
// {"table": ..., "action": "INSERT|UPDATE|DELETE", "data": {row or key}}.
type notification struct {
	Action string                     `json:"action"`
	Data   map[string]json.RawMessage `json:"data"`
}

// field looks a column up case-insensitively (row_to_json keeps the
// column names' case).
func (n *notification) field(name string) (json.RawMessage, bool) {
	if v, ok := n.Data[name]; ok {
		return v, true
	}
	for k, v := range n.Data {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// parseNotification returns the changed key and its item, reading the row
// when the payload carries only the key.
func (s *Store) parseNotification(ctx context.Context, sub *watch.Sub, payload string) (string, *configuration.Item, bool) {
	var n notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.Data == nil {
		s.log.Warn("ignoring a notification that is not {\"action\", \"data\"} JSON", "subscription", sub.ID, "payload", payload)
		return "", nil, false
	}
	rawKey, ok := n.field("key")
	if !ok {
		s.log.Warn("ignoring a notification without data.key", "subscription", sub.ID, "payload", payload)
		return "", nil, false
	}
	key := jsonText(rawKey)
	if !sub.Watches(key) {
		return "", nil, false
	}
	if strings.EqualFold(n.Action, "DELETE") {
		return key, &configuration.Item{}, true
	}
	if rawValue, ok := n.field("value"); ok {
		it := &configuration.Item{Value: jsonText(rawValue)}
		if v, ok := n.field("version"); ok {
			it.Version = jsonText(v)
		}
		if md, ok := n.field("metadata"); ok {
			it.Metadata = s.metadata(key, md)
		}
		return key, it, true
	}
	items, err := s.Get(ctx, configuration.GetRequest{Keys: []string{key}})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading a changed configuration item failed", "subscription", sub.ID, "key", key, "error", err)
		}
		return "", nil, false
	}
	if it := items[key]; it != nil {
		return key, it, true
	}
	return key, &configuration.Item{}, true // deleted since
}

// Unsubscribe ends the subscription id (closing its connection).
func (s *Store) Unsubscribe(_ context.Context, id string) error {
	return s.subs.Stop(id)
}

// Close ends every subscription and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.subs.Close()
		if s.pool != nil {
			s.pool.Close()
		}
	})
	return nil
}
