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

// config is the decoded component metadata; names are matched
// case-insensitively. keyPrefix is the runtime's and is ignored here.
type config struct {
	// ConnectionString (required) is a pgx connection string: a URL or
	// key/value pairs; pool settings such as pool_max_conns go here too.
	ConnectionString string
	// Table (tableName, default "locks"), optionally schema-qualified, is
	// created on Init when missing. Names are folded to lower case, as
	// PostgreSQL does for unquoted identifiers.
	Table pgx.Identifier
	// Timeout (timeout, alias timeoutInSeconds; default 20s) bounds each
	// operation, including the connection check in Init. A bare number is
	// seconds.
	Timeout time.Duration
	// CleanupInterval (cleanupInterval, alias cleanupIntervalInSeconds;
	// default 1h) is how often expired rows are deleted; zero or negative
	// disables it. Expired rows never count as held either way.
	CleanupInterval time.Duration
}

const (
	defaultTable           = "locks"
	defaultTimeout         = 20 * time.Second
	defaultCleanupInterval = time.Hour
)

// identPart is one unquoted identifier of at most 63 bytes; nothing else is
// accepted, so the table name can never carry SQL.
var identPart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

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
	if c.Timeout, err = duration(md, defaultTimeout, "timeout", "timeoutInSeconds"); err != nil {
		errs = append(errs, err)
	} else if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("metadata timeout must be positive, got %v", c.Timeout))
	}
	if c.CleanupInterval, err = duration(md, defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// parseTableName validates "table" or "schema.table" and lower-cases it.
func parseTableName(name string) (pgx.Identifier, error) {
	parts := strings.Split(strings.TrimSpace(name), ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("metadata tableName %q: want table or schema.table", name)
	}
	for i, p := range parts {
		if !identPart.MatchString(p) {
			return nil, fmt.Errorf("metadata tableName %q: %q is not a plain identifier (letters, digits and _, not starting with a digit, at most 63 bytes)", name, p)
		}
		parts[i] = strings.ToLower(p)
	}
	return pgx.Identifier(parts), nil
}

// duration reads the first of names that is set; bare numbers are seconds.
func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && strings.TrimSpace(v) != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}
