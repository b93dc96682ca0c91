package sqlite

import (
	"fmt"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
	"github.com/mecha-dev/mecha/components/internal/sqliteconn"
)

// Defaults.
const (
	defaultTable        = "configuration"
	defaultPollInterval = time.Second
	defaultBusyTimeout  = 2 * time.Second
	minPollInterval     = 10 * time.Millisecond
)

var connOptions = sqliteconn.Options{
	BusyTimeout: defaultBusyTimeout,
	Example:     `a database file such as "config.db", or a "file:" URI`,
}

// config is the decoded component metadata: the connection properties (see
// sqliteconn.Settings) and the store's own. In-memory databases are
// refused: their items could only be written by this process, which never
// writes. Timeout bounds every read and the schema setup; BusyTimeout is
// how long to wait for a lock held by a writer. DisableWAL keeps the
// journal the file has instead of switching it to WAL (network file
// systems).
type config struct {
	sqliteconn.Settings
	// Table is table (alias tableName), default "configuration"; created
	// with its version triggers when missing.
	Table string
	// PollInterval is pollInterval, how often subscriptions check for
	// changes (default 1s, at least 10ms).
	PollInterval time.Duration
}

func parseConfig(md components.Metadata) (config, error) {
	r := props.New(md, sqliteconn.Unit)
	c := config{
		Settings:     sqliteconn.Parse(r, connOptions),
		Table:        sqliteconn.Table(r, defaultTable, "table", "tableName"),
		PollInterval: r.Duration(defaultPollInterval, "pollInterval"),
	}
	if c.PollInterval < minPollInterval {
		r.Fail("pollInterval", fmt.Sprintf("%v is shorter than %v", c.PollInterval, minPollInterval))
	}
	if c.InMemory {
		r.Fail("connectionString", fmt.Sprintf("%q is an in-memory database; configuration.sqlite needs a database file, written by other processes", c.ConnectionString))
	}
	return c, r.Err()
}
