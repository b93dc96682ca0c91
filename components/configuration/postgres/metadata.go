package postgres

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
)

// Defaults.
const (
	defaultTable   = "configuration"
	defaultTimeout = 20 * time.Second
	// maxIdentifier is PostgreSQL's identifier length limit (NAMEDATALEN-1),
	// which also bounds NOTIFY channel names.
	maxIdentifier = 63
)

// config is the decoded component metadata (Dapr's names,
// case-insensitive; durations are Go durations or bare seconds).
type config struct {
	// ConnectionString is connectionString, a libpq keyword/value string or
	// URL. Required.
	ConnectionString string
	// Table is table (Dapr's name for it), optionally schema-qualified:
	// lowercase letters, digits and underscores. Default "configuration".
	Table string
	// Timeout is timeout (alias timeoutInSeconds): the bound of every query
	// and of Subscribe's setup (default 20s).
	Timeout time.Duration
	// MaxConns is maxConns, the pool size (default: pgx's).
	MaxConns int
	// MaxConnIdleTime is connectionMaxIdleTime (alias connMaxIdleTime).
	MaxConnIdleTime time.Duration
}

func isKnownProperty(name string) bool {
	switch strings.ToLower(name) {
	case "connectionstring", "table", "timeout", "timeoutinseconds", "maxconns",
		"connectionmaxidletime", "connmaxidletime":
		return true
	}
	return false
}

func parseConfig(md components.Metadata) (config, []string, error) {
	c := config{
		ConnectionString: strings.TrimSpace(md.String("connectionString", "")),
		Table:            strings.TrimSpace(md.String("table", defaultTable)),
	}
	var errs []error
	if c.ConnectionString == "" {
		errs = append(errs, errors.New(`metadata "connectionString" is required`))
	}
	if err := validTable(c.Table); err != nil {
		errs = append(errs, err)
	}
	var err error
	if c.Timeout, err = duration(md, defaultTimeout, "timeout", "timeoutInSeconds"); err != nil {
		errs = append(errs, err)
	} else if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf(`metadata "timeout": %v must be positive`, c.Timeout))
	}
	if c.MaxConns, err = md.Int("maxConns", 0); err != nil {
		errs = append(errs, err)
	} else if c.MaxConns < 0 {
		errs = append(errs, errors.New(`metadata "maxConns" must not be negative`))
	}
	if c.MaxConnIdleTime, err = duration(md, 0, "connectionMaxIdleTime", "connMaxIdleTime"); err != nil {
		errs = append(errs, err)
	}
	var warnings []string
	for k := range md.Properties {
		if !isKnownProperty(k) {
			warnings = append(warnings, fmt.Sprintf("ignoring unknown metadata property %q", k))
		}
	}
	return c, warnings, errors.Join(errs...)
}

func duration(md components.Metadata, def time.Duration, names ...string) (time.Duration, error) {
	for _, n := range names {
		if v, ok := md.Get(n); ok && strings.TrimSpace(v) != "" {
			return md.Duration(n, time.Second, def)
		}
	}
	return def, nil
}

// validTable accepts "table" or "schema.table" made of lowercase letters,
// digits and underscores, as Dapr does (so the name needs no quoting rules
// beyond pgx's).
func validTable(name string) error {
	parts := strings.Split(name, ".")
	if name == "" || len(parts) > 2 {
		return fmt.Errorf(`metadata "table": %q is not a table name ("table" or "schema.table")`, name)
	}
	for _, p := range parts {
		if p == "" || len(p) > maxIdentifier {
			return fmt.Errorf(`metadata "table": %q is not a table name`, name)
		}
		for i, r := range p {
			switch {
			case r == '_', 'a' <= r && r <= 'z':
			case '0' <= r && r <= '9' && i > 0:
			default:
				return fmt.Errorf(`metadata "table": %q may only hold lowercase letters, digits and underscores`, name)
			}
		}
	}
	return nil
}

// ident quotes a possibly schema-qualified name.
func ident(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// defaultChannel is the NOTIFY channel of the trigger Mecha creates on a
// table it creates.
func defaultChannel(table string) string {
	ch := "mecha_cfg_" + strings.ReplaceAll(table, ".", "_")
	if len(ch) <= maxIdentifier {
		return ch
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	return fmt.Sprintf("%s_%08x", ch[:maxIdentifier-9], h.Sum32())
}
