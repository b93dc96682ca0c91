// Package postgres is the bindings.postgresql output binding (also
// registered as bindings.postgres): SQL statements sent by the app, with
// Dapr's operations exec, query and close.
//
// The statement is the request metadata "sql"; "params", when set, is a JSON
// array bound positionally to $1, $2, ... (always prefer it to building SQL
// text from user input). exec answers no data and the metadata
// "rows-affected"; query answers a JSON array of rows, each row an array of
// column values, as Dapr does. Both add "operation", "sql", "start-time",
// "end-time" and "duration" to the response metadata.
//
// close is accepted for compatibility and does nothing: connections come
// from a pool and are returned to it after every operation, which is what
// Dapr's close was for. (Dapr's close shut the whole pool, leaving the
// binding unusable.)
package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
	"github.com/mecha-dev/mecha/components/internal/postgresconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// Operations of the binding.
const (
	OperationExec  bindings.Operation = "exec"
	OperationQuery bindings.Operation = "query"
	OperationClose bindings.Operation = "close"
)

// Binding is the PostgreSQL output binding.
type Binding struct {
	log *slog.Logger

	mu   sync.RWMutex
	pool *pgxpool.Pool // nil before Init and after Close
}

var _ bindings.Output = (*Binding)(nil)

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init opens the pool and checks the connection. The metadata is
// connectionString (alias url, Dapr's older name): a pgx connection string,
// URL or key/value form, where pool settings such as pool_max_conns go too.
// timeout (alias timeoutInSeconds, default 20s) bounds the connection check.
func (b *Binding) Init(ctx context.Context, md components.Metadata) error {
	mdcheck.WarnUnknown(b.log, md, "connectionString", "url", "timeout", "timeoutInSeconds")
	r := props.New(md, postgresconn.Unit)
	if r.Name("connectionString", "url") == "" {
		return errors.New(`metadata "connectionString" is required`)
	}
	s := postgresconn.Parse(r, "connectionString", "url")
	if err := r.Err(); err != nil {
		return err
	}
	cfg, err := s.PoolConfig()
	if err != nil {
		// pgx's message may quote the string, password included.
		return errors.New(`metadata "connectionString" is not a valid PostgreSQL connection string`)
	}
	pool, err := s.Open(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("postgresql: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pool != nil {
		b.pool.Close()
	}
	b.pool = pool
	return nil
}

// Operations lists exec, query and close.
func (b *Binding) Operations() []bindings.Operation {
	return []bindings.Operation{OperationExec, OperationQuery, OperationClose}
}

// Invoke runs one statement.
func (b *Binding) Invoke(ctx context.Context, req *bindings.InvokeRequest) (*bindings.InvokeResponse, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.pool == nil {
		return nil, errors.New("postgresql binding is not initialised or closed")
	}
	switch req.Operation {
	case OperationClose:
		return nil, nil
	case OperationExec, OperationQuery:
	default:
		return nil, fmt.Errorf("invalid operation type: %s. Expected %s, %s, or %s", req.Operation, OperationExec, OperationQuery, OperationClose)
	}
	sql := req.Metadata["sql"]
	if strings.TrimSpace(sql) == "" {
		return nil, errors.New(`metadata "sql" is required`)
	}
	args, err := params(req.Metadata["params"])
	if err != nil {
		return nil, err
	}
	start := time.Now().UTC()
	resp := &bindings.InvokeResponse{Metadata: map[string]string{
		"operation":  string(req.Operation),
		"sql":        sql,
		"start-time": start.Format(time.RFC3339Nano),
	}}
	if req.Operation == OperationExec {
		tag, err := b.pool.Exec(ctx, sql, args...)
		if err != nil {
			return nil, fmt.Errorf("error executing %s: %w", sql, err)
		}
		resp.Metadata["rows-affected"] = strconv.FormatInt(tag.RowsAffected(), 10)
	} else {
		data, err := b.query(ctx, sql, args)
		if err != nil {
			return nil, fmt.Errorf("error executing %s: %w", sql, err)
		}
		resp.Data = data
		resp.ContentType = "application/json"
	}
	end := time.Now().UTC()
	resp.Metadata["end-time"] = end.Format(time.RFC3339Nano)
	resp.Metadata["duration"] = end.Sub(start).String()
	return resp, nil
}

func (b *Binding) query(ctx context.Context, sql string, args []any) ([]byte, error) {
	rows, err := b.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []any{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			vals[i] = jsonValue(v)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// jsonValue makes a column value JSON-friendly where encoding/json would
// not: UUIDs become their text form.
func jsonValue(v any) any {
	if u, ok := v.([16]byte); ok {
		return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	}
	return v
}

// params decodes the "params" metadata: a JSON array whose elements are
// bound to $1, $2, ... Integers stay exact; objects and arrays are passed as
// their JSON text (for json/jsonb columns).
func params(raw string) ([]any, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var list []json.RawMessage
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf(`metadata "params" must be a JSON array: %w`, err)
	}
	args := make([]any, len(list))
	for i, el := range list {
		el = bytes.TrimSpace(el)
		switch {
		case len(el) == 0:
		case el[0] == '{' || el[0] == '[':
			args[i] = string(el)
		default:
			d := json.NewDecoder(bytes.NewReader(el))
			d.UseNumber()
			var v any
			if err := d.Decode(&v); err != nil {
				return nil, fmt.Errorf(`metadata "params"[%d]: %w`, i, err)
			}
			if n, ok := v.(json.Number); ok {
				if iv, err := n.Int64(); err == nil {
					v = iv
				} else if fv, err := n.Float64(); err == nil {
					v = fv
				} else {
					v = n.String()
				}
			}
			args[i] = v
		}
	}
	return args, nil
}

// Close closes the pool; it is idempotent.
func (b *Binding) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pool != nil {
		b.pool.Close()
		b.pool = nil
	}
	return nil
}
