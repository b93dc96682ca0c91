package pubsubtest

import (
	"os"
	"testing"
)

// ServiceEnv returns the environment variable name (a service address such
// as REDIS_ADDR, NATS_URL or MQTT_URL), skipping the test when it is unset,
// or failing it when MECHA_REQUIRE_SERVICES=1 (as CI sets), where a missing
// service must not pass silently. It mirrors internal/mechatest.ServiceEnv,
// which components cannot import.
func ServiceEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not set but MECHA_REQUIRE_SERVICES=1 (source /tmp/dapr-services/services.env)", name)
		}
		t.Skipf("%s is not set; start services with ../shared/services/start-services.sh", name)
	}
	return v
}
