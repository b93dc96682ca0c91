package sqlite

import (
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
)

// Defaults, named as in Dapr's state.sqlite documentation.
const (
	defaultTableName       = "state"
	defaultCleanupInterval = time.Hour
	defaultBusyTimeout     = 2 * time.Second
)

// connOptions: the writer begins transactions with BEGIN IMMEDIATE (see
// sqliteconn.TxImmediate).
var connOptions = sqliteconn.Options{
	BusyTimeout: defaultBusyTimeout,
	Example:     `a file path such as "data.db", a "file:" URI, or ":memory:"`,
	TxLock:      true,
}

// config is the decoded component metadata: the connection properties (see
// sqliteconn.Settings) and the store's own. Dapr's actorStateStore and
// keyPrefix are handled by the runtime, and metadataTableName has no use
// here (this component keeps no metadata table); all three are accepted and
// ignored.
//
// Timeout bounds every operation: transactions, bulk reads and the sweep as
// a whole; single-key reads and writes in their wait for a connection,
// after which their one statement is bounded by BusyTimeout (see gate in
// sqlite.go).
type config struct {
	sqliteconn.Settings
	// TableName is the table holding the state; created when missing.
	TableName string
	// CleanupInterval is how often expired rows are deleted (default 1h);
	// zero or negative disables the sweep. Reads never return expired rows.
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
