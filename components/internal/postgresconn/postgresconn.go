// Package postgresconn is what the built-in PostgreSQL components (state,
// lock, configuration, bindings) share about their connection, so that one
// manifest reaches the same server the same way from each of them: the
// connection properties (connectionString, timeout), the rule that keeps a
// table name from ever carrying SQL, and opening a pgxpool pool whose first
// connection is checked, with errors that name the server and the user
// rather than quote the connection string and its password.
package postgresconn

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mecha-dev/mecha/components/internal/props"
)

// Unit is the unit of a duration given as a bare number ("5" is 5s), as in
// Dapr's PostgreSQL components.
const Unit = time.Second

// DefaultTimeout is the default of the timeout property.
const DefaultTimeout = 20 * time.Second

// Settings are the decoded connection properties, named as in Dapr
// (case-insensitive).
type Settings struct {
	// ConnectionString is connectionString (required): a pgx connection
	// string, a URL ("postgres://user:pass@host:5432/db?sslmode=disable")
	// or key/value pairs ("host=... user=... dbname=..."). Pool settings
	// such as pool_max_conns go here too.
	ConnectionString string
	// Timeout is timeout (alias timeoutInSeconds; default 20s): the bound
	// of each operation, including the connection check in Init.
	Timeout time.Duration
}

// Parse reads the connection properties with r, which must read durations
// in Unit, and records every invalid one in r. The connection string is read
// from the first of names that is set, connectionString when names is
// empty.
func Parse(r *props.Reader, names ...string) Settings {
	if len(names) == 0 {
		names = []string{"connectionString"}
	}
	s := Settings{
		ConnectionString: strings.TrimSpace(r.String(names...)),
		Timeout:          r.Duration(DefaultTimeout, "timeout", "timeoutInSeconds"),
	}
	if s.ConnectionString == "" {
		r.Add(fmt.Errorf("metadata %s is required", names[0]))
	}
	if s.Timeout <= 0 {
		r.Add(fmt.Errorf("metadata %s must be positive, got %v", r.Name("timeout", "timeoutInSeconds"), s.Timeout))
	}
	return s
}

// identPart is one unquoted PostgreSQL identifier, at most 63 bytes long (the
// server's NAMEDATALEN limit). Nothing else is accepted, so a table name can
// never carry SQL.
var identPart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Table reads a table name from the first of names that is set, or def,
// and validates it with ParseTable.
func Table(r *props.Reader, def string, names ...string) pgx.Identifier {
	prop, name := r.Name(names...), r.String(names...)
	if prop == "" {
		prop, name = names[0], def
	}
	table, err := ParseTable(prop, name)
	if err != nil {
		r.Add(err)
	}
	return table
}

// ParseTable validates name, the value of property prop, as "table" or
// "schema.table" made of plain identifiers, and returns it lower-cased (as
// PostgreSQL folds unquoted identifiers), ready for Sanitize.
func ParseTable(prop, name string) (pgx.Identifier, error) {
	parts := strings.Split(strings.TrimSpace(name), ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("metadata %s %q: want table or schema.table", prop, name)
	}
	for i, p := range parts {
		if !identPart.MatchString(p) {
			const rule = "letters, digits and _, not starting with a digit, at most 63 bytes"
			if len(parts) == 1 {
				return nil, fmt.Errorf("metadata %s %q is not a plain identifier (%s)", prop, name, rule)
			}
			return nil, fmt.Errorf("metadata %s %q: %q is not a plain identifier (%s)", prop, name, p, rule)
		}
		parts[i] = strings.ToLower(p)
	}
	return pgx.Identifier(parts), nil
}

// PoolConfig parses the connection string. The error wraps pgx's, which
// redacts the password on a best-effort basis.
func (s Settings) PoolConfig() (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(s.ConnectionString)
	if err != nil {
		return nil, fmt.Errorf("invalid connectionString: %w", err)
	}
	return cfg, nil
}

// Connect opens a pool for s: see Open.
func (s Settings) Connect(ctx context.Context, setup func(context.Context, *pgxpool.Pool) error) (*pgxpool.Pool, error) {
	cfg, err := s.PoolConfig()
	if err != nil {
		return nil, err
	}
	return s.Open(ctx, cfg, setup)
}

// Open opens a pool for cfg, checks that the server answers and runs setup
// (the component's schema; nil for none) on the pool, all within ctx and
// Timeout. On error nothing is left open, and the error names the server
// and the user, not the password. Once open, the pool discards a broken
// connection and replaces it on a later call, so the component recovers
// from a server restart by itself.
func (s Settings) Open(ctx context.Context, cfg *pgxpool.Config, setup func(context.Context, *pgxpool.Pool) error) (*pgxpool.Pool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		cc := cfg.ConnConfig
		return nil, fmt.Errorf("cannot connect to %s as %q: %w", net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), cc.User, err)
	}
	if setup != nil {
		if err := setup(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}
