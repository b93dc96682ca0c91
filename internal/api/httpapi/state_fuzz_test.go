package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// fuzzEndpoints are the state API routes that decode a JSON body.
var fuzzEndpoints = []string{
	"/v1.0/state/statestore",
	"/v1.0/state/statestore/bulk",
	"/v1.0/state/statestore/transaction",
}

// storeErrors are the 5xx answers a store failure may produce; anything
// else above 499 (ERR_INTERNAL from a panic, a missing errorCode) is a bug.
var storeErrors = map[string]bool{
	"ERR_STATE_SAVE":        true,
	"ERR_STATE_GET":         true,
	"ERR_STATE_BULK_GET":    true,
	"ERR_STATE_DELETE":      true,
	"ERR_STATE_TRANSACTION": true,
}

// FuzzStateAPI posts arbitrary bodies (and a ttlInSeconds query value) to the
// state routes of one in-process sidecar with an in-memory store. Every
// answer must be a success or a Dapr error body; none may hang or be an
// internal error. Seeds: f.Add below and testdata/fuzz/FuzzStateAPI.
func FuzzStateAPI(f *testing.F) {
	f.Add(uint8(0), "", []byte(`[{"key":"k","value":{"a":1}},{"key":"k2","value":"s","etag":"1","options":{"concurrency":"first-write","consistency":"strong"}}]`))
	f.Add(uint8(0), "60", []byte(`[{"key":"ttl","value":1,"metadata":{"ttlInSeconds":"-1"}}]`))
	f.Add(uint8(0), "", []byte(`[{"key":"a||b","value":1}]`))
	f.Add(uint8(0), "", []byte(`[null, {}]`))
	f.Add(uint8(1), "", []byte(`{"keys":["k","k2","missing"],"parallelism":-3,"metadata":{"x":"y"}}`))
	f.Add(uint8(1), "", []byte(`{"keys":[""]}`))
	f.Add(uint8(2), "", []byte(`{"operations":[{"operation":"upsert","request":{"key":"t","value":[1]}},{"operation":"delete","request":{"key":"k","etag":"0"}}],"metadata":{"m":"v"}}`))
	f.Add(uint8(2), "1", []byte(`{"operations":[{"operation":"merge","request":{"key":"t"}}]}`))
	f.Add(uint8(2), "", []byte(`{"operations":null}`))
	f.Add(uint8(1), "", []byte(`{"keys":"k"}`))
	f.Add(uint8(0), "x", []byte("\xff\xfe"))

	s := mechatest.Start(f, func(o *runtime.Options) {
		o.AppID = "fuzzapp"
		o.Logger = slog.New(slog.DiscardHandler)
		o.MaxBodySize = 64 << 10
	}, mechatest.InMemory)
	client := &http.Client{Timeout: 10 * time.Second}

	f.Fuzz(func(t *testing.T, endpoint uint8, ttl string, body []byte) {
		u := s.URL + fuzzEndpoints[int(endpoint)%len(fuzzEndpoints)]
		if ttl != "" {
			u += "?metadata.ttlInSeconds=" + url.QueryEscape(ttl)
		}
		method := "POST"
		if endpoint >= 128 {
			method = "PUT"
		}
		req, err := http.NewRequest(method, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (a hang or a dropped connection)", method, u, err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch {
		case resp.StatusCode == http.StatusNoContent:
			if len(got) != 0 {
				t.Fatalf("204 with a body %q", got)
			}
			return
		case resp.StatusCode == http.StatusOK:
			var items []map[string]any
			if err := json.Unmarshal(got, &items); err != nil {
				t.Fatalf("200 with a body that is not a JSON array: %q", got)
			}
			return
		}
		var e struct {
			ErrorCode string `json:"errorCode"`
			Message   string `json:"message"`
		}
		if err := json.Unmarshal(got, &e); err != nil || e.ErrorCode == "" || e.Message == "" {
			t.Fatalf("%d with a body that is not a Dapr error: %q", resp.StatusCode, got)
		}
		switch {
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
		case resp.StatusCode >= 500 && storeErrors[e.ErrorCode]:
		default:
			t.Fatalf("%s %s with body %q: %d %s", method, u, body, resp.StatusCode, got)
		}
	})
}
