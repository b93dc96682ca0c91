package postgres

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/postgresconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// Defaults.
const (
	defaultTable = "configuration"
	// maxIdentifier is PostgreSQL's identifier length limit (NAMEDATALEN-1),
	// which also bounds NOTIFY channel names.
	maxIdentifier = 63
)

// config is the decoded component metadata: the connection properties (see
// postgresconn.Settings; timeout bounds every query and Subscribe's setup)
// and the store's own. Names are Dapr's, case-insensitive; durations are Go
// durations or bare seconds.
type config struct {
	postgresconn.Settings
	// Table is table (Dapr's name for it), optionally schema-qualified:
	// lowercase letters, digits and underscores. Default "configuration".
	Table string
	// MaxConns is maxConns, the pool size (default: pgx's).
	MaxConns int
	// MaxConnIdleTime is connectionMaxIdleTime (alias connMaxIdleTime).
	MaxConnIdleTime time.Duration
}

var knownProperties = []string{
	"connectionString", "table", "timeout", "timeoutInSeconds", "maxConns",
	"connectionMaxIdleTime", "connMaxIdleTime",
}

func parseConfig(md components.Metadata) (config, []string, error) {
	r := props.New(md, postgresconn.Unit)
	c := config{
		Settings:        postgresconn.Parse(r),
		Table:           strings.TrimSpace(md.String("table", defaultTable)),
		MaxConns:        r.Int(0, "maxConns"),
		MaxConnIdleTime: r.Duration(0, "connectionMaxIdleTime", "connMaxIdleTime"),
	}
	if err := validTable(c.Table); err != nil {
		r.Add(err)
	}
	if c.MaxConns < 0 {
		r.Add(errors.New(`metadata "maxConns" must not be negative`))
	}
	return c, props.Unknown(md, knownProperties...), r.Err()
}

// validTable accepts "table" or "schema.table" made of plain identifiers in
// lower case, as Dapr does (so the name needs no quoting rules beyond
// pgx's).
func validTable(name string) error {
	if _, err := postgresconn.ParseTable("table", name); err != nil {
		return err
	}
	if name != strings.ToLower(name) {
		return fmt.Errorf("metadata table %q may only hold lowercase letters, digits and underscores", name)
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
