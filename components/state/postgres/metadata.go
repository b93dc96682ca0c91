package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
)

// config is the decoded component metadata. Property names are Dapr's and
// are matched case-insensitively.
type config struct {
	// ConnectionString (connectionString, required) is a pgx connection
	// string: a URL ("postgres://user:pass@host:5432/db?sslmode=disable") or
	// key/value pairs ("host=... user=... dbname=..."). Pool settings such as
	// pool_max_conns go here too.
	ConnectionString string
	// Table (tableName, default "state") is the table holding the state,
	// optionally schema-qualified ("myschema.state"). It is created on Init
	// if missing, with the same columns as Dapr's state.postgresql v2, so the
	// two can share it. Names are folded to lower case, as PostgreSQL does
	// for unquoted identifiers.
	Table pgx.Identifier
	// Timeout (timeout, alias timeoutInSeconds; default 20s) bounds each
	// operation, including the connection check in Init. A bare number is
	// seconds.
	Timeout time.Duration
	// CleanupInterval (cleanupInterval, alias cleanupIntervalInSeconds;
	// default 1h) is how often rows past their TTL are deleted. Zero or
	// negative disables the cleanup; expired rows stay invisible to reads
	// either way. A bare number is seconds.
	CleanupInterval time.Duration
}

const (
	defaultTable           = "state"
	defaultTimeout         = 20 * time.Second
	defaultCleanupInterval = time.Hour
)

// identPart is one unquoted PostgreSQL identifier, at most 63 bytes long (the
// server's NAMEDATALEN limit). Nothing else is accepted, so the table name
// can never carry SQL.
var identPart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// parseConfig decodes and validates md. actorStateStore and keyPrefix are
// read by the runtime, not here.
func parseConfig(md components.Metadata) (config, error) {
	var c config
	var errs []error

	c.ConnectionString = strings.TrimSpace(md.String("connectionString", ""))
	if c.ConnectionString == "" {
		errs = append(errs, errors.New("metadata connectionString is required"))
	}

	table, err := parseTableName(md.String("tableName", defaultTable))
	if err != nil {
		errs = append(errs, err)
	}
	c.Table = table

	c.Timeout, err = duration(md, defaultTimeout, "timeout", "timeoutInSeconds")
	if err != nil {
		errs = append(errs, err)
	} else if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("metadata timeout must be positive, got %v", c.Timeout))
	}

	c.CleanupInterval, err = duration(md, defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds")
	if err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// parseTableName validates name as "table" or "schema.table" made of plain
// identifiers and returns it lower-cased, ready for Sanitize.
func parseTableName(name string) (pgx.Identifier, error) {
	parts := strings.Split(strings.TrimSpace(name), ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("metadata tableName %q: want table or schema.table", name)
	}
	for i, p := range parts {
		if !identPart.MatchString(p) {
			const rule = "letters, digits and _, not starting with a digit, at most 63 bytes"
			if len(parts) == 1 {
				return nil, fmt.Errorf("metadata tableName %q is not a plain identifier (%s)", name, rule)
			}
			return nil, fmt.Errorf("metadata tableName %q: %q is not a plain identifier (%s)", name, p, rule)
		}
		parts[i] = strings.ToLower(p)
	}
	return pgx.Identifier(parts), nil
}

// duration reads the first of names that is set, with bare numbers in
// seconds as Dapr does.
func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && v != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}
