package sqlite

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
)

// Defaults.
const (
	defaultTableName       = "locks"
	defaultBusyTimeout     = 5 * time.Second
	defaultCleanupInterval = time.Hour
)

// connOptions: transactions begin with BEGIN IMMEDIATE (see
// sqliteconn.TxImmediate).
var connOptions = sqliteconn.Options{
	BusyTimeout: defaultBusyTimeout,
	Example:     `a file path such as "locks.db", a "file:" URI, or ":memory:"`,
	TxLock:      true,
}

// config is the decoded component metadata: the connection properties (see
// sqliteconn.Settings; ":memory:" keeps the locks private to this store) and
// the store's own. Timeout bounds every operation, including the wait for
// the store's connection. keyPrefix is the runtime's and is ignored here.
type config struct {
	sqliteconn.Settings
	// TableName is the table holding the locks; created when missing.
	TableName string
	// CleanupInterval is how often expired rows are deleted (default 1h;
	// zero disables). Expired rows never count as held either way.
	CleanupInterval time.Duration
}

func parseConfig(md components.Metadata) (config, error) {
	r := props.New(md, sqliteconn.Unit)
	c := config{
		Settings:        sqliteconn.Parse(r, connOptions),
		TableName:       sqliteconn.Table(r, defaultTableName, "tableName"),
		CleanupInterval: r.Duration(defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"),
	}
	return c, r.Err()
}
