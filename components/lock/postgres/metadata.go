package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/postgresconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// config is the decoded component metadata: the connection properties (see
// postgresconn.Settings) and the store's own; names are matched
// case-insensitively. keyPrefix is the runtime's and is ignored here.
type config struct {
	postgresconn.Settings
	// Table (tableName, default "locks"), optionally schema-qualified, is
	// created on Init when missing. Names are folded to lower case, as
	// PostgreSQL does for unquoted identifiers.
	Table pgx.Identifier
	// CleanupInterval (cleanupInterval, alias cleanupIntervalInSeconds;
	// default 1h) is how often expired rows are deleted; zero or negative
	// disables it. Expired rows never count as held either way.
	CleanupInterval time.Duration
}

const (
	defaultTable           = "locks"
	defaultCleanupInterval = time.Hour
)

func parseConfig(md components.Metadata) (config, error) {
	r := props.New(md, postgresconn.Unit)
	c := config{
		Settings:        postgresconn.Parse(r),
		Table:           postgresconn.Table(r, defaultTable, "tableName"),
		CleanupInterval: r.Duration(defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"),
	}
	return c, r.Err()
}
