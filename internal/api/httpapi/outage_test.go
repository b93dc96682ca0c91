package httpapi_test

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestBackendOutage: when a store's backend goes away, its calls fail fast
// with ERR_STATE_*, other stores keep serving, and the store recovers when
// the backend returns.
func TestBackendOutage(t *testing.T) {
	var outage *mechatest.Proxy
	cases := map[string]func(t *testing.T) string{
		"redis": func(t *testing.T) string {
			proxy := mechatest.StartProxy(t, mechatest.ServiceEnv(t, "REDIS_ADDR"))
			t.Cleanup(func() { proxy.SetDown(false) })
			outage = proxy
			return mechatest.Component("remote", "state.redis", "redisHost", proxy.Addr, "dialTimeout", "500ms", "readTimeout", "1s", "maxRetries", "0")
		},
		"postgresql": func(t *testing.T) string {
			u, err := url.Parse(mechatest.ServiceEnv(t, "PG_DSN"))
			if err != nil {
				t.Fatal(err)
			}
			proxy := mechatest.StartProxy(t, u.Host)
			outage = proxy
			u.Host = proxy.Addr
			return mechatest.Component("remote", "state.postgresql", "connectionString", u.String(), "timeout", "2s", "tableName", fmt.Sprintf("outage_%d", time.Now().UnixNano()))
		},
	}
	for name, yaml := range cases {
		t.Run(name, func(t *testing.T) {
			comp := yaml(t)
			proxy := outage
			s := mechatest.Start(t, uniqueApp, mechatest.InMemory, comp)
			wantStatus(t, s.Do(t, "POST", "/v1.0/state/remote", `[{"key":"k","value":1}]`), 204, "")

			proxy.SetDown(true)
			start := time.Now()
			wantStatus(t, s.Do(t, "GET", "/v1.0/state/remote/k", nil), 500, "ERR_STATE_GET")
			wantStatus(t, s.Do(t, "POST", "/v1.0/state/remote", `[{"key":"k","value":2}]`), 500, "ERR_STATE_SAVE")
			if el := time.Since(start); el > 8*time.Second {
				t.Fatalf("failing calls took %v", el)
			}
			// The other store is unaffected.
			wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"k","value":3}]`), 204, "")
			if r := s.Do(t, "GET", "/v1.0/state/statestore/k", nil); string(r.Body) != "3" {
				t.Fatalf("in-memory store during outage: %d %s", r.Status, r.Body)
			}

			proxy.SetDown(false)
			mechatest.Eventually(t, 15*time.Second, func() error {
				r := s.Do(t, "GET", "/v1.0/state/remote/k", nil)
				if r.Status != 200 || string(r.Body) != "1" {
					return fmt.Errorf("after recovery: %d %s", r.Status, r.Body)
				}
				return nil
			})
		})
	}
}
