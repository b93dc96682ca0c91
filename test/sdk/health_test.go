package sdk

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestHealthAppPort: with --app-port set, /v1.0/healthz/outbound is 204 as
// soon as the APIs serve, while /v1.0/healthz stays 500 ERR_HEALTH_NOT_READY
// until the app listens on its port.
func TestHealthAppPort(t *testing.T) {
	t.Parallel()
	appPort := freePort(t) // nobody listens here yet
	s := startSidecar(t, sidecarConfig{
		Resources: inMemoryStore(nil),
		Args:      []string{"--app-port", strconv.Itoa(appPort)},
	})

	expectStatus(t, "GET /v1.0/healthz/outbound", s.do(t, http.MethodGet, "/v1.0/healthz/outbound", nil), http.StatusNoContent)
	r := s.do(t, http.MethodGet, "/v1.0/healthz", nil)
	expectError(t, "GET /v1.0/healthz before the app listens", r, http.StatusInternalServerError, "ERR_HEALTH_NOT_READY")

	// The building-block APIs already serve (what SDKs' waitForSidecar
	// relies on).
	httpSave(t, s, saveJSON{Key: "early", Value: "before the app"})
	httpExpectValue(t, s, "early", `"before the app"`)

	// The metadata reports the app connection.
	md := s.metadata(t)
	if md.AppConnectionProperties == nil || md.AppConnectionProperties.Port != appPort || md.AppConnectionProperties.Protocol != "http" {
		t.Errorf("appConnectionProperties = %+v, want port %d protocol http", md.AppConnectionProperties, appPort)
	}

	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(appPort))
	if err != nil {
		t.Fatalf("listening on the app port %d: %v", appPort, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	start := time.Now()
	if err := s.waitHTTP("/v1.0/healthz", http.StatusNoContent, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("healthz became 204 %v after the app listened", time.Since(start).Round(time.Millisecond))
	expectStatus(t, "GET /v1.0/healthz/outbound", s.do(t, http.MethodGet, "/v1.0/healthz/outbound", nil), http.StatusNoContent)
}
