package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func uniqueApp(o *runtime.Options) { o.AppID = fmt.Sprintf("app%d", time.Now().UnixNano()) }

func wantStatus(t *testing.T, r *mechatest.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.ErrorCode() != code {
		t.Fatalf("got %d %q (body %s), want %d %q", r.Status, r.ErrorCode(), r.Body, status, code)
	}
}

// TestStateAcrossStores drives the state HTTP API against every store.
func TestStateAcrossStores(t *testing.T) {
	for _, sc := range mechatest.StateStores() {
		t.Run(sc.Name, func(t *testing.T) {
			s := mechatest.Start(t, uniqueApp, sc.YAML(t, "statestore", "actorStateStore", "true"))
			testStateHTTP(t, s)
		})
	}
}

func testStateHTTP(t *testing.T, s *mechatest.Sidecar) {
	t.Run("save get delete", func(t *testing.T) {
		r := s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"k1","value":{"n": 1, "s":"ünïcode"}},{"key":"k2","value":"text"}]`)
		wantStatus(t, r, 204, "")
		r = s.Do(t, "GET", "/v1.0/state/statestore/k1", nil)
		if r.Status != 200 || string(r.Body) != `{"n":1,"s":"ünïcode"}` {
			t.Fatalf("GET k1 = %d %s", r.Status, r.Body)
		}
		if r.Header.Get("ETag") == "" || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET k1 headers %v", r.Header)
		}
		if r := s.Do(t, "GET", "/v1.0/state/statestore/k2", nil); string(r.Body) != `"text"` {
			t.Fatalf("GET k2 = %s, want the JSON string with quotes", r.Body)
		}
		wantStatus(t, s.Do(t, "DELETE", "/v1.0/state/statestore/k1", nil), 204, "")
		r = s.Do(t, "GET", "/v1.0/state/statestore/k1", nil)
		if r.Status != 204 || len(r.Body) != 0 {
			t.Fatalf("GET deleted key = %d %q, want 204 empty", r.Status, r.Body)
		}
		// PUT works like POST; the JS SDK's trailing "?" too.
		wantStatus(t, s.Do(t, "PUT", "/v1.0/state/statestore?", `[{"key":"k3","value":3}]`), 204, "")
		if r := s.Do(t, "GET", "/v1.0/state/statestore/k3", nil); string(r.Body) != "3" {
			t.Fatalf("GET k3 = %s", r.Body)
		}
	})
	t.Run("etag", func(t *testing.T) {
		s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"e","value":1}]`)
		e1 := s.Do(t, "GET", "/v1.0/state/statestore/e", nil).Header.Get("ETag")
		body := fmt.Sprintf(`[{"key":"e","value":2,"etag":%q}]`, e1)
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", body), 204, "")
		// e1 is stale now.
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", body), 409, "ERR_STATE_SAVE")
		wantStatus(t, s.Do(t, "DELETE", "/v1.0/state/statestore/e", nil, "If-Match", e1), 409, "ERR_STATE_DELETE")
		if r := s.Do(t, "GET", "/v1.0/state/statestore/e", nil); string(r.Body) != "2" {
			t.Fatalf("value after refused writes = %s, want 2", r.Body)
		}
		e2 := s.Do(t, "GET", "/v1.0/state/statestore/e", nil).Header.Get("ETag")
		wantStatus(t, s.Do(t, "DELETE", "/v1.0/state/statestore/e", nil, "If-Match", e2), 204, "")
		// An etag on a missing key is a conflict, not an insert.
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", fmt.Sprintf(`[{"key":"e","value":3,"etag":%q}]`, e2)), 409, "ERR_STATE_SAVE")
		// first-write: a second write without etag is refused.
		fw := `[{"key":"fw","value":1,"options":{"concurrency":"first-write"}}]`
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", fw), 204, "")
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", fw), 409, "ERR_STATE_SAVE")
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"fw","value":1,"options":{"concurrency":"sometimes"}}]`), 400, "ERR_MALFORMED_REQUEST")
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"fw","value":1,"options":{"consistency":"strong"}}]`), 204, "")
		wantStatus(t, s.Do(t, "GET", "/v1.0/state/statestore/fw?consistency=bogus", nil), 400, "ERR_MALFORMED_REQUEST")
	})
	t.Run("bulk get", func(t *testing.T) {
		s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"b1","value":{"x":1}},{"key":"b2","value":"two"}]`)
		r := s.Do(t, "POST", "/v1.0/state/statestore/bulk", `{"keys":["b1","missing","b2"],"parallelism":2}`)
		var items []struct {
			Key   string `json:"key"`
			Data  any    `json:"data"`
			ETag  string `json:"etag"`
			Error string `json:"error"`
		}
		r.JSON(t, &items)
		if len(items) != 3 || items[0].Key != "b1" || items[1].Key != "missing" || items[2].Key != "b2" {
			t.Fatalf("bulk items = %s", r.Body)
		}
		if fmt.Sprint(items[0].Data) != "map[x:1]" || items[2].Data != "two" || items[1].Data != nil || items[0].ETag == "" || items[1].ETag != "" {
			t.Fatalf("bulk items = %s", r.Body)
		}
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore/bulk", `{"keys":["a||b"]}`), 400, "ERR_MALFORMED_REQUEST")
	})
	t.Run("transaction", func(t *testing.T) {
		s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"t1","value":"old"},{"key":"t2","value":"gone"}]`)
		tx := `{"operations":[{"operation":"upsert","request":{"key":"t1","value":"new"}},{"operation":"delete","request":{"key":"t2"}},{"operation":"upsert","request":{"key":"t3","value":[1,2]}}]}`
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore/transaction", tx), 204, "")
		if r := s.Do(t, "GET", "/v1.0/state/statestore/t1", nil); string(r.Body) != `"new"` {
			t.Fatalf("t1 = %s", r.Body)
		}
		if r := s.Do(t, "GET", "/v1.0/state/statestore/t2", nil); r.Status != 204 {
			t.Fatalf("t2 after delete = %d %s", r.Status, r.Body)
		}
		// A stale etag aborts everything.
		stale := `{"operations":[{"operation":"upsert","request":{"key":"t1","value":"newer"}},{"operation":"upsert","request":{"key":"t3","value":0,"etag":"999999"}}]}`
		r := s.Do(t, "POST", "/v1.0/state/statestore/transaction", stale)
		if r.Status != 409 && r.Status != 400 || r.ErrorCode() != "ERR_STATE_TRANSACTION" {
			t.Fatalf("stale tx = %d %s", r.Status, r.Body)
		}
		if r := s.Do(t, "GET", "/v1.0/state/statestore/t1", nil); string(r.Body) != `"new"` {
			t.Fatalf("t1 after aborted tx = %s, want unchanged", r.Body)
		}
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore/transaction", `{"operations":[{"operation":"merge","request":{"key":"t1"}}]}`), 400, "ERR_NOT_SUPPORTED_STATE_OPERATION")
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore/transaction", `{"operations":[{"operation":"upsert","request":{"key":"a||b","value":1}}]}`), 400, "ERR_MALFORMED_REQUEST")
	})
	t.Run("ttl", func(t *testing.T) {
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore?metadata.ttlInSeconds=1", `[{"key":"ttl","value":1},{"key":"ttl2","value":2,"metadata":{"ttlInSeconds":"3600"}}]`), 204, "")
		r := s.Do(t, "GET", "/v1.0/state/statestore/ttl2", nil)
		exp, err := time.Parse(time.RFC3339, r.Header.Get("metadata.ttlExpireTime"))
		if err != nil || time.Until(exp) < 50*time.Minute {
			t.Fatalf("ttlExpireTime = %q (%v), want about an hour ahead", r.Header.Get("metadata.ttlExpireTime"), err)
		}
		mechatest.Eventually(t, 10*time.Second, func() error {
			if r := s.Do(t, "GET", "/v1.0/state/statestore/ttl", nil); r.Status != 204 {
				return fmt.Errorf("still %d %s", r.Status, r.Body)
			}
			return nil
		})
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore?metadata.ttlInSeconds=soon", `[{"key":"ttl","value":1}]`), 400, "ERR_MALFORMED_REQUEST")
	})
	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"unknown store get", "GET", "/v1.0/state/nope/k", "", 400, "ERR_STATE_STORE_NOT_FOUND"},
			{"unknown store save", "POST", "/v1.0/state/nope", `[{"key":"k","value":1}]`, 400, "ERR_STATE_STORE_NOT_FOUND"},
			{"empty key", "POST", "/v1.0/state/statestore", `[{"key":"","value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
			{"key with ||", "GET", "/v1.0/state/statestore/a%7C%7Cb", "", 400, "ERR_MALFORMED_REQUEST"},
			{"save key with ||", "POST", "/v1.0/state/statestore", `[{"key":"a||b","value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
			{"malformed json", "POST", "/v1.0/state/statestore", `[{"key":`, 400, "ERR_MALFORMED_REQUEST"},
			{"not an array", "POST", "/v1.0/state/statestore", `{"key":"k","value":1}`, 400, "ERR_MALFORMED_REQUEST"},
			{"wrong key type", "POST", "/v1.0/state/statestore", `[{"key":5,"value":1}]`, 400, "ERR_MALFORMED_REQUEST"},
			{"wrong etag type", "POST", "/v1.0/state/statestore", `[{"key":"k","value":1,"etag":7}]`, 400, "ERR_MALFORMED_REQUEST"},
			{"wrong metadata type", "POST", "/v1.0/state/statestore", `[{"key":"k","value":1,"metadata":{"ttlInSeconds":5}}]`, 400, "ERR_MALFORMED_REQUEST"},
			{"bulk not an object", "POST", "/v1.0/state/statestore/bulk", `["k"]`, 400, "ERR_MALFORMED_REQUEST"},
			{"tx malformed", "POST", "/v1.0/state/statestore/transaction", `{"operations":{}}`, 400, "ERR_MALFORMED_REQUEST"},
			{"no app id", "GET", "/v1.0/nothing/here", "", 404, "ERR_DIRECT_INVOKE"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any
				if c.body != "" {
					body = c.body
				}
				wantStatus(t, s.Do(t, c.method, c.path, body), c.status, c.code)
			})
		}
		// Nothing above wrote a key.
		if r := s.Do(t, "GET", "/v1.0/state/statestore/k", nil); r.Status != 204 {
			t.Fatalf("bad requests wrote state: %d %s", r.Status, r.Body)
		}
	})
	t.Run("large value", func(t *testing.T) {
		big := strings.Repeat("x", 3<<20)
		wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", fmt.Sprintf(`[{"key":"big","value":%q}]`, big)), 204, "")
		if r := s.Do(t, "GET", "/v1.0/state/statestore/big", nil); len(r.Body) != len(big)+2 {
			t.Fatalf("big value length %d, want %d", len(r.Body), len(big)+2)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	s := mechatest.Start(t, func(o *runtime.Options) { o.MaxBodySize = 1 << 20 }, mechatest.InMemory)
	big := fmt.Sprintf(`[{"key":"k","value":%q}]`, strings.Repeat("y", 2<<20))
	wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", big), 413, "ERR_BODY_TOO_LARGE")
	// Without a Content-Length the limit applies while reading.
	req, _ := http.NewRequest("POST", s.URL+"/v1.0/state/statestore", strings.NewReader(big))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversize body = %d, want 413", resp.StatusCode)
	}
	// The sidecar still serves.
	wantStatus(t, s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"k","value":1}]`), 204, "")
}

func TestNoStores(t *testing.T) {
	s := mechatest.Start(t, nil)
	wantStatus(t, s.Do(t, "GET", "/v1.0/state/statestore/k", nil), 500, "ERR_STATE_STORE_NOT_CONFIGURED")
}
