package postgres

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/postgresconn"
	"github.com/mecha-dev/mecha/components/internal/props"
)

// config is the decoded component metadata: the connection properties (see
// postgresconn.Settings) and the store's own. Property names are Dapr's and
// are matched case-insensitively.
type config struct {
	postgresconn.Settings
	// Table (tableName, default "state") is the table holding the state,
	// optionally schema-qualified ("myschema.state"). It is created on Init
	// if missing, with the same columns as Dapr's state.postgresql v2, so the
	// two can share it. Names are folded to lower case, as PostgreSQL does
	// for unquoted identifiers.
	Table pgx.Identifier
	// CleanupInterval (cleanupInterval, alias cleanupIntervalInSeconds;
	// default 1h) is how often rows past their TTL are deleted. Zero or
	// negative disables the cleanup; expired rows stay invisible to reads
	// either way. A bare number is seconds.
	CleanupInterval time.Duration
}

const (
	defaultTable           = "state"
	defaultCleanupInterval = time.Hour
)

// parseConfig decodes and validates md. actorStateStore and keyPrefix are
// read by the runtime, not here.
func parseConfig(md components.Metadata) (config, error) {
	r := props.New(md, postgresconn.Unit)
	c := config{
		Settings:        postgresconn.Parse(r),
		Table:           postgresconn.Table(r, defaultTable, "tableName"),
		CleanupInterval: r.Duration(defaultCleanupInterval, "cleanupInterval", "cleanupIntervalInSeconds"),
	}
	return c, r.Err()
}
