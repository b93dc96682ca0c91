package mechatest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StoreCase is one state store configuration to run a scenario against.
type StoreCase struct {
	Name string
	// YAML returns the Component document for a store named name.
	YAML func(t testing.TB, name string, extra ...string) string
}

// RequireServices reports whether tests must fail, not skip, when a backing
// service is not configured (CI sets MECHA_REQUIRE_SERVICES=1).
func RequireServices() bool { return os.Getenv("MECHA_REQUIRE_SERVICES") == "1" }

// ServiceEnv returns the environment variable, skipping (or failing in CI)
// the test when it is unset.
func ServiceEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if RequireServices() {
			t.Fatalf("%s is not set but MECHA_REQUIRE_SERVICES=1 (source /tmp/dapr-services/services.env)", name)
		}
		t.Skipf("%s is not set; start services with ../shared/services/start-services.sh", name)
	}
	return v
}

// StateStores lists every built-in state store: in-memory and SQLite always,
// Redis when REDIS_ADDR is set and PostgreSQL when PG_DSN is set.
func StateStores() []StoreCase {
	return []StoreCase{
		{"in-memory", func(t testing.TB, name string, extra ...string) string {
			return Component(name, "state.in-memory", extra...)
		}},
		{"sqlite", func(t testing.TB, name string, extra ...string) string {
			path := filepath.Join(t.TempDir(), "state.db")
			return Component(name, "state.sqlite", append([]string{"connectionString", path}, extra...)...)
		}},
		{"redis", func(t testing.TB, name string, extra ...string) string {
			addr := ServiceEnv(t, "REDIS_ADDR")
			return Component(name, "state.redis", append([]string{"redisHost", addr}, extra...)...)
		}},
		{"postgresql", func(t testing.TB, name string, extra ...string) string {
			dsn := ServiceEnv(t, "PG_DSN")
			table := fmt.Sprintf("mecha_test_%d", time.Now().UnixNano())
			return Component(name, "state.postgresql", append([]string{"connectionString", dsn, "tableName", table}, extra...)...)
		}},
	}
}
