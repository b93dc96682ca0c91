package sdk

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// Plain HTTP tests: the Dapr v1 HTTP API driven with net/http only, as the
// JS, Python and Java SDKs and curl users drive it.

const statePath = "/v1.0/state/" + storeName

// saveJSON is one item of a save request body.
type saveJSON struct {
	Key      string            `json:"key"`
	Value    any               `json:"value,omitempty"`
	ETag     *string           `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
}

type txOpJSON struct {
	Operation string   `json:"operation"`
	Request   saveJSON `json:"request"`
}

type txJSON struct {
	Operations []txOpJSON        `json:"operations"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

func strPtr(s string) *string { return &s }

// httpGet reads key over HTTP and returns status, body and ETag header.
func httpGet(t testing.TB, s *sidecar, key string) httpResult {
	t.Helper()
	return s.do(t, http.MethodGet, statePath+"/"+key, nil)
}

func httpExpectValue(t testing.TB, s *sidecar, key, want string) string {
	t.Helper()
	r := httpGet(t, s, key)
	expectStatus(t, "GET "+key, r, http.StatusOK)
	if string(r.Body) != want {
		t.Fatalf("GET %s = %s, want %s", key, r.Body, want)
	}
	return r.Header.Get("ETag")
}

func httpExpectMissing(t testing.TB, s *sidecar, key string) {
	t.Helper()
	r := httpGet(t, s, key)
	if r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("GET %s = %s, want 204 with an empty body", key, r)
	}
}

func httpSave(t testing.TB, s *sidecar, items ...saveJSON) {
	t.Helper()
	r := s.doJSON(t, http.MethodPost, statePath, items)
	expectStatus(t, "POST "+statePath, r, http.StatusNoContent)
	if len(r.Body) != 0 {
		t.Errorf("POST %s: 204 with a body %q", statePath, r.Body)
	}
}

func TestHTTPState(t *testing.T) {
	t.Parallel()
	for _, st := range stateStores {
		t.Run(st.Name, func(t *testing.T) {
			t.Parallel()
			st.requireService(t)
			s := startStoreSidecar(t, st, sidecarConfig{}, t.TempDir(), storeName, nil)
			testHTTPState(t, s)
		})
	}
}

func testHTTPState(t *testing.T, s *sidecar) {
	t.Run("CRUD", func(t *testing.T) {
		httpSave(t, s, saveJSON{Key: "h-obj", Value: map[string]any{"a": 1, "b": "x"}})
		r := httpGet(t, s, "h-obj")
		expectStatus(t, "GET h-obj", r, http.StatusOK)
		if string(r.Body) != `{"a":1,"b":"x"}` {
			t.Errorf("GET h-obj = %s, want {\"a\":1,\"b\":\"x\"}", r.Body)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET Content-Type = %q, want application/json", ct)
		}
		if r.Header.Get("ETag") == "" {
			t.Errorf("GET h-obj: no ETag header (headers %v)", r.Header)
		}

		// JSON strings are stored with their quotes, numbers as numbers.
		httpSave(t, s, saveJSON{Key: "h-str", Value: "x"}, saveJSON{Key: "h-num", Value: 42})
		httpExpectValue(t, s, "h-str", `"x"`)
		httpExpectValue(t, s, "h-num", `42`)

		// PUT saves too.
		r = s.doJSON(t, http.MethodPut, statePath, []saveJSON{{Key: "h-put", Value: []int{1, 2}}})
		expectStatus(t, "PUT "+statePath, r, http.StatusNoContent)
		httpExpectValue(t, s, "h-put", `[1,2]`)

		// An empty array is a no-op.
		expectStatus(t, "POST []", s.do(t, http.MethodPost, statePath, []byte(`[]`)), http.StatusNoContent)

		r = s.do(t, http.MethodDelete, statePath+"/h-obj", nil)
		expectStatus(t, "DELETE h-obj", r, http.StatusNoContent)
		httpExpectMissing(t, s, "h-obj")
		// Deleting a missing key succeeds.
		expectStatus(t, "DELETE missing", s.do(t, http.MethodDelete, statePath+"/h-never-"+uniqueID(), nil), http.StatusNoContent)
	})

	t.Run("GetMissing", func(t *testing.T) {
		httpExpectMissing(t, s, "h-missing-"+uniqueID())
	})

	t.Run("ETag", func(t *testing.T) {
		httpSave(t, s, saveJSON{Key: "h-etag", Value: "v1"})
		e1 := httpExpectValue(t, s, "h-etag", `"v1"`)
		httpSave(t, s, saveJSON{Key: "h-etag", Value: "v2", ETag: strPtr(e1)})
		e2 := httpExpectValue(t, s, "h-etag", `"v2"`)
		if e1 == e2 {
			t.Fatalf("ETag unchanged after a write: %q", e1)
		}
		r := s.doJSON(t, http.MethodPost, statePath, []saveJSON{{Key: "h-etag", Value: "v3", ETag: strPtr(e1)}})
		expectError(t, "save with a stale etag", r, http.StatusConflict, "ERR_STATE_SAVE")
		httpExpectValue(t, s, "h-etag", `"v2"`)

		r = s.do(t, http.MethodDelete, statePath+"/h-etag", nil, "If-Match", e1)
		expectError(t, "DELETE with a stale If-Match", r, http.StatusConflict, "ERR_STATE_DELETE")
		httpExpectValue(t, s, "h-etag", `"v2"`)
		r = s.do(t, http.MethodDelete, statePath+"/h-etag", nil, "If-Match", e2)
		expectStatus(t, "DELETE with the current If-Match", r, http.StatusNoContent)
		httpExpectMissing(t, s, "h-etag")
	})

	t.Run("FirstWrite", func(t *testing.T) {
		fw := map[string]string{"concurrency": "first-write"}
		httpSave(t, s, saveJSON{Key: "h-fw", Value: "first", Options: fw})
		r := s.doJSON(t, http.MethodPost, statePath, []saveJSON{{Key: "h-fw", Value: "second", Options: fw}})
		expectError(t, "first-write on an existing key", r, http.StatusConflict, "ERR_STATE_SAVE")
		etag := httpExpectValue(t, s, "h-fw", `"first"`)
		httpSave(t, s, saveJSON{Key: "h-fw", Value: "third", ETag: &etag, Options: fw})
		httpExpectValue(t, s, "h-fw", `"third"`)
	})

	t.Run("Bulk", func(t *testing.T) {
		httpSave(t, s, saveJSON{Key: "hb-1", Value: map[string]int{"x": 1}}, saveJSON{Key: "hb-2", Value: "two"})
		r := s.doJSON(t, http.MethodPost, statePath+"/bulk", map[string]any{"keys": []string{"hb-1", "hb-2", "hb-missing"}, "parallelism": 2})
		expectStatus(t, "POST bulk", r, http.StatusOK)
		var items []map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &items); err != nil {
			t.Fatalf("bulk response %s is not an array of objects: %v", r.Body, err)
		}
		if len(items) != 3 {
			t.Fatalf("bulk response has %d items, want 3: %s", len(items), r.Body)
		}
		byKey := map[string]map[string]json.RawMessage{}
		for _, it := range items {
			var k string
			if err := json.Unmarshal(it["key"], &k); err != nil {
				t.Fatalf("bulk item without a string key: %s", r.Body)
			}
			byKey[k] = it
		}
		for key, want := range map[string]string{"hb-1": `{"x":1}`, "hb-2": `"two"`} {
			it := byKey[key]
			if it == nil {
				t.Fatalf("bulk response lacks %s: %s", key, r.Body)
			}
			if string(it["data"]) != want {
				t.Errorf("bulk %s data = %s, want %s", key, it["data"], want)
			}
			var etag string
			if err := json.Unmarshal(it["etag"], &etag); err != nil || etag == "" {
				t.Errorf("bulk %s etag = %s, want a non-empty string", key, it["etag"])
			}
			if got := httpGet(t, s, key).Header.Get("ETag"); got != etag {
				t.Errorf("bulk %s etag %q != GET ETag %q", key, etag, got)
			}
		}
		m := byKey["hb-missing"]
		if m == nil {
			t.Fatalf("bulk response lacks the missing key: %s", r.Body)
		}
		if d, ok := m["data"]; ok && string(d) != "null" {
			t.Errorf("bulk missing key has data %s", d)
		}
		if e, ok := m["etag"]; ok && string(e) != "null" && string(e) != `""` {
			t.Errorf("bulk missing key has etag %s", e)
		}
		// PUT works as well.
		r = s.doJSON(t, http.MethodPut, statePath+"/bulk", map[string]any{"keys": []string{"hb-2"}})
		expectStatus(t, "PUT bulk", r, http.StatusOK)
	})

	t.Run("Transaction", func(t *testing.T) {
		httpSave(t, s, saveJSON{Key: "ht-del", Value: "x"})
		r := s.doJSON(t, http.MethodPost, statePath+"/transaction", txJSON{Operations: []txOpJSON{
			{Operation: "upsert", Request: saveJSON{Key: "ht-a", Value: "a"}},
			{Operation: "upsert", Request: saveJSON{Key: "ht-b", Value: map[string]bool{"ok": true}}},
			{Operation: "delete", Request: saveJSON{Key: "ht-del"}},
		}})
		expectStatus(t, "transaction", r, http.StatusNoContent)
		httpExpectValue(t, s, "ht-a", `"a"`)
		httpExpectValue(t, s, "ht-b", `{"ok":true}`)
		httpExpectMissing(t, s, "ht-del")

		// Atomicity: the second operation's stale etag aborts the first.
		stale := httpExpectValue(t, s, "ht-a", `"a"`)
		httpSave(t, s, saveJSON{Key: "ht-a", Value: "a2"})
		r = s.doJSON(t, http.MethodPost, statePath+"/transaction", txJSON{Operations: []txOpJSON{
			{Operation: "upsert", Request: saveJSON{Key: "ht-b", Value: "changed"}},
			{Operation: "upsert", Request: saveJSON{Key: "ht-a", Value: "a3", ETag: &stale}},
		}})
		expectError(t, "transaction with a stale etag", r, http.StatusConflict, "ERR_STATE_TRANSACTION")
		httpExpectValue(t, s, "ht-b", `{"ok":true}`)
		httpExpectValue(t, s, "ht-a", `"a2"`)

		r = s.doJSON(t, http.MethodPost, statePath+"/transaction", txJSON{Operations: []txOpJSON{
			{Operation: "upsert", Request: saveJSON{Key: "ht-b", Value: "changed"}},
			{Operation: "patch", Request: saveJSON{Key: "ht-a", Value: "x"}},
		}})
		expectError(t, "transaction with operation patch", r, http.StatusBadRequest, "ERR_NOT_SUPPORTED_STATE_OPERATION")
		httpExpectValue(t, s, "ht-b", `{"ok":true}`)

		r = s.doJSON(t, http.MethodPut, statePath+"/transaction", txJSON{Operations: []txOpJSON{
			{Operation: "delete", Request: saveJSON{Key: "ht-b"}},
		}})
		expectStatus(t, "PUT transaction", r, http.StatusNoContent)
		httpExpectMissing(t, s, "ht-b")
	})

	t.Run("TTL", func(t *testing.T) {
		r := s.doJSON(t, http.MethodPost, statePath+"?metadata.ttlInSeconds=1", []saveJSON{{Key: "h-ttl", Value: "short"}})
		expectStatus(t, "save with metadata.ttlInSeconds", r, http.StatusNoContent)
		httpSave(t, s, saveJSON{Key: "h-ttl-item", Value: "short", Metadata: map[string]string{"ttlInSeconds": "1"}})
		r = httpGet(t, s, "h-ttl")
		expectStatus(t, "GET right after the save", r, http.StatusOK)
		if r.Header.Get("metadata.ttlExpireTime") == "" {
			t.Errorf("GET of a key with a TTL: no metadata.ttlExpireTime header (headers %v)", r.Header)
		}
		httpExpectValue(t, s, "h-ttl-item", `"short"`)
		for _, key := range []string{"h-ttl", "h-ttl-item"} {
			eventually(t, 10*time.Second, key+" expires", func() bool {
				return httpGet(t, s, key).Status == http.StatusNoContent
			})
		}
	})

	t.Run("Errors", func(t *testing.T) {
		const code = "ERR_STATE_STORE_NOT_FOUND"
		expectError(t, "GET on an unknown store", s.do(t, http.MethodGet, "/v1.0/state/nostore/k", nil), http.StatusBadRequest, code)
		expectError(t, "POST to an unknown store", s.doJSON(t, http.MethodPost, "/v1.0/state/nostore", []saveJSON{{Key: "k", Value: 1}}), http.StatusBadRequest, code)
		expectError(t, "DELETE on an unknown store", s.do(t, http.MethodDelete, "/v1.0/state/nostore/k", nil), http.StatusBadRequest, code)
		expectError(t, "bulk on an unknown store", s.doJSON(t, http.MethodPost, "/v1.0/state/nostore/bulk", map[string]any{"keys": []string{"k"}}), http.StatusBadRequest, code)
		expectError(t, "transaction on an unknown store", s.doJSON(t, http.MethodPost, "/v1.0/state/nostore/transaction", txJSON{Operations: []txOpJSON{{Operation: "upsert", Request: saveJSON{Key: "k", Value: 1}}}}), http.StatusBadRequest, code)

		const bad = "ERR_MALFORMED_REQUEST"
		expectError(t, `save key "a||b"`, s.doJSON(t, http.MethodPost, statePath, []saveJSON{{Key: "a||b", Value: 1}}), http.StatusBadRequest, bad)
		expectError(t, `GET key "a||b"`, s.do(t, http.MethodGet, statePath+"/a||b", nil), http.StatusBadRequest, bad)
		expectError(t, `DELETE key "a||b"`, s.do(t, http.MethodDelete, statePath+"/a%7C%7Cb", nil), http.StatusBadRequest, bad)
		expectError(t, `bulk with key "a||b"`, s.doJSON(t, http.MethodPost, statePath+"/bulk", map[string]any{"keys": []string{"a||b"}}), http.StatusBadRequest, bad)
		expectError(t, "save with an empty key", s.doJSON(t, http.MethodPost, statePath, []saveJSON{{Key: "", Value: 1}}), http.StatusBadRequest, bad)

		expectError(t, "save with malformed JSON", s.do(t, http.MethodPost, statePath, []byte(`[{"key":"k","value":`)), http.StatusBadRequest, bad)
		expectError(t, "save with an object instead of an array", s.do(t, http.MethodPost, statePath, []byte(`{"key":"k","value":1}`)), http.StatusBadRequest, bad)
		expectError(t, "bulk with malformed JSON", s.do(t, http.MethodPost, statePath+"/bulk", []byte(`{"keys":[`)), http.StatusBadRequest, bad)
		expectError(t, "transaction with malformed JSON", s.do(t, http.MethodPost, statePath+"/transaction", []byte(`{"operations":`)), http.StatusBadRequest, bad)
		// Nothing was written by the failed requests.
		httpExpectMissing(t, s, "k")
	})

	t.Run("TrailingQuestionMark", func(t *testing.T) {
		// The JS SDK sends POST /v1.0/state/statestore? (empty query).
		r := s.doJSON(t, http.MethodPost, statePath+"?", []saveJSON{{Key: "h-js", Value: map[string]string{"from": "js"}}})
		expectStatus(t, "POST "+statePath+"?", r, http.StatusNoContent)
		httpExpectValue(t, s, "h-js", `{"from":"js"}`)
		r = s.do(t, http.MethodGet, statePath+"/h-js?", nil)
		expectStatus(t, "GET with a trailing ?", r, http.StatusOK)
		// Check the bytes on the wire really carry the "?".
		body := `[{"key":"h-js2","value":"raw"}]`
		raw := rawHTTP(t, s, "POST "+statePath+"? HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
			"Content-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
		if !strings.HasPrefix(raw, "HTTP/1.1 204") {
			t.Fatalf("raw POST with a trailing ?: %q", raw)
		}
		httpExpectValue(t, s, "h-js2", `"raw"`)
	})

	t.Run("GRPCInterop", func(t *testing.T) {
		c := s.sdkClient(t)
		bin := []byte{0x00, 0x01, 0xfe, 0xff, 'h', 'i', 0x80}
		must(t, "SDK SaveState", c.SaveState(ctxT(t), storeName, "interop-bin", bin, nil))
		r := httpGet(t, s, "interop-bin")
		expectStatus(t, "GET interop-bin", r, http.StatusOK)
		if !bytes.Equal(r.Body, bin) {
			t.Errorf("HTTP GET of a gRPC-saved value = %x, want %x", r.Body, bin)
		}
		_, etag := getState(t, c, "interop-bin")
		if r.Header.Get("ETag") != etag {
			t.Errorf("HTTP ETag %q != gRPC etag %q", r.Header.Get("ETag"), etag)
		}
		// The other way: a value saved over HTTP reads back over gRPC as
		// its JSON bytes.
		httpSave(t, s, saveJSON{Key: "interop-json", Value: map[string]any{"n": 1.5, "s": "é"}})
		expectValue(t, c, "interop-json", []byte(`{"n":1.5,"s":"é"}`))
		// Keys with spaces and non-ASCII characters, escaped in the URL.
		odd := "key with spaces ü?#%"
		must(t, "SDK SaveState", c.SaveState(ctxT(t), storeName, odd, []byte(`"odd"`), nil))
		httpExpectValue(t, s, url.PathEscape(odd), `"odd"`)
		expectStatus(t, "DELETE escaped key", s.do(t, http.MethodDelete, statePath+"/"+url.PathEscape(odd), nil), http.StatusNoContent)
		expectMissing(t, c, odd)
		// An HTTP delete with the gRPC etag works.
		r = s.do(t, http.MethodDelete, statePath+"/interop-bin", nil, "If-Match", etag)
		expectStatus(t, "DELETE with the gRPC etag", r, http.StatusNoContent)
		expectMissing(t, c, "interop-bin")
	})
}

// eventually polls cond until it is true or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}

// rawHTTP writes request bytes to the HTTP port and returns the whole
// response (the request must say Connection: close).
func rawHTTP(t testing.TB, s *sidecar, request string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(s.HTTPPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("reading raw response: %v", err)
	}
	return string(b)
}

func TestHTTPMetadata(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})

	r := s.do(t, http.MethodGet, "/v1.0/metadata", nil)
	expectStatus(t, "GET /v1.0/metadata", r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	// Check the exact field names clients read.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatalf("metadata is not a JSON object: %s", r.Body)
	}
	for _, f := range []string{"id", "components", "runtimeVersion"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("metadata lacks field %q: %s", f, r.Body)
		}
	}
	var comps []map[string]json.RawMessage
	if err := json.Unmarshal(raw["components"], &comps); err != nil || len(comps) != 1 {
		t.Fatalf("components = %s, want one object", raw["components"])
	}
	for _, f := range []string{"name", "type", "version", "capabilities"} {
		if _, ok := comps[0][f]; !ok {
			t.Errorf("component lacks field %q: %s", f, raw["components"])
		}
	}
	md := s.metadata(t)
	if md.ID != s.AppID {
		t.Errorf("id = %q, want %q", md.ID, s.AppID)
	}
	c := md.Components[0]
	if c.Name != storeName || c.Type != "state.in-memory" || c.Version != "v1" {
		t.Errorf("component = %+v", c)
	}
	for _, cap := range []string{"ETAG", "TRANSACTIONAL", "ACTOR"} {
		if !slices.Contains(c.Capabilities, cap) {
			t.Errorf("capabilities %v lack %s", c.Capabilities, cap)
		}
	}
	if len(md.ResourceErrors) != 0 {
		t.Errorf("resourceErrors = %+v, want none", md.ResourceErrors)
	}

	r = s.do(t, http.MethodPut, "/v1.0/metadata/myKey", []byte("my value"), "Content-Type", "text/plain")
	expectStatus(t, "PUT /v1.0/metadata/myKey", r, http.StatusNoContent)
	if got := s.metadata(t).Extended["myKey"]; got != "my value" {
		t.Errorf("extended[myKey] = %q, want %q", got, "my value")
	}
	// Visible over gRPC too.
	gmd, err := s.sdkClient(t).GetMetadata(ctxT(t))
	must(t, "GetMetadata", err)
	if gmd.ExtendedMetadata["myKey"] != "my value" {
		t.Errorf("gRPC ExtendedMetadata[myKey] = %q", gmd.ExtendedMetadata["myKey"])
	}
}

func TestHTTPHealth(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	expectStatus(t, "GET /v1.0/healthz", s.do(t, http.MethodGet, "/v1.0/healthz", nil), http.StatusNoContent)
	expectStatus(t, "GET /v1.0/healthz/outbound", s.do(t, http.MethodGet, "/v1.0/healthz/outbound", nil), http.StatusNoContent)
	expectStatus(t, "GET /v1.0/healthz?appid=<own>", s.do(t, http.MethodGet, "/v1.0/healthz?appid="+s.AppID, nil), http.StatusNoContent)
	r := s.do(t, http.MethodGet, "/v1.0/healthz?appid=other", nil)
	expectError(t, "GET /v1.0/healthz?appid=other", r, http.StatusInternalServerError, "ERR_HEALTH_APPID_NOT_MATCH")

	t.Run("EmptyAppID", func(t *testing.T) {
		// daprd (pkg/api/http/healthz.go) tests qs.Has("appid"): a present
		// but empty appid does not match this app either.
		r := s.do(t, http.MethodGet, "/v1.0/healthz?appid=", nil)
		if r.Status != http.StatusInternalServerError {
			knownBug(t, "healthz-empty-appid", "GET /v1.0/healthz?appid= answered %s; daprd answers 500 ERR_HEALTH_APPID_NOT_MATCH", r)
		}
		expectError(t, "GET /v1.0/healthz?appid=", r, http.StatusInternalServerError, "ERR_HEALTH_APPID_NOT_MATCH")
	})
}

func TestHTTPShutdown(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil)})
	start := time.Now()
	expectStatus(t, "POST /v1.0/shutdown", s.do(t, http.MethodPost, "/v1.0/shutdown", nil), http.StatusNoContent)
	code, exited := s.waitExit(8 * time.Second)
	if !exited {
		t.Fatalf("sidecar still running %v after POST /v1.0/shutdown", time.Since(start))
	}
	if code != 0 {
		t.Fatalf("exit code after POST /v1.0/shutdown = %d, want 0", code)
	}
}

func TestHTTPBodyTooLarge(t *testing.T) {
	t.Parallel()
	s := startSidecar(t, sidecarConfig{Resources: inMemoryStore(nil), Args: []string{"--dapr-http-max-request-size", "1"}})
	big := `[{"key":"big","value":"` + strings.Repeat("x", 2<<20) + `"}]`

	r := s.do(t, http.MethodPost, statePath, []byte(big))
	expectError(t, "POST 2 MB with a 1 MB limit", r, http.StatusRequestEntityTooLarge, "ERR_BODY_TOO_LARGE")

	// Without Content-Length (chunked) the limit applies while reading.
	req, err := http.NewRequest(http.MethodPost, s.HTTPURL+statePath, io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("chunked POST of 2 MB: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	expectError(t, "chunked POST of 2 MB", httpResult{Status: resp.StatusCode, Header: resp.Header, Body: body}, http.StatusRequestEntityTooLarge, "ERR_BODY_TOO_LARGE")
	httpExpectMissing(t, s, "big")

	// The sidecar keeps serving, and a body under the limit is accepted.
	if !s.running() {
		t.Fatal("sidecar exited after an oversize body")
	}
	expectStatus(t, "healthz after oversize bodies", s.do(t, http.MethodGet, "/v1.0/healthz", nil), http.StatusNoContent)
	ok := `[{"key":"under","value":"` + strings.Repeat("y", 900<<10) + `"}]`
	expectStatus(t, "POST 900 KB", s.do(t, http.MethodPost, statePath, []byte(ok)), http.StatusNoContent)
	if r := httpGet(t, s, "under"); r.Status != http.StatusOK || len(r.Body) != 900<<10+2 {
		t.Errorf("GET under: status %d, %d bytes", r.Status, len(r.Body))
	}

	// The same limit applies to gRPC messages.
	c := s.sdkClient(t)
	err = c.SaveState(ctxT(t), storeName, "big-grpc", bytes.Repeat([]byte("z"), 2<<20), nil)
	expectCode(t, "SDK SaveState of 2 MB with a 1 MB limit", err, codes.ResourceExhausted)
	must(t, "SDK SaveState after the oversize message", c.SaveState(ctxT(t), storeName, "small", []byte("ok"), nil))
}

func TestHTTPResources(t *testing.T) {
	t.Parallel()
	res := inMemoryStore(nil)
	// Several documents in one file.
	res["multi.yaml"] = componentYAML("store2", "state.in-memory", nil) + "---\n" + componentYAML("store3", "state.in-memory", nil)
	// A component scoped to other apps is not loaded, and is no error.
	res["scoped.yaml"] = componentYAML("notmine", "state.in-memory", nil) + "scopes:\n- some-other-app\n"
	res["broken.yaml"] = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: [not, a, name\nspec: {type: state.in-memory\n"
	res["unknown-type.yaml"] = componentYAML("mystery", "state.does-not-exist", nil)
	s := startSidecar(t, sidecarConfig{Resources: res})

	md := s.metadata(t)
	files := map[string]string{}
	for _, e := range md.ResourceErrors {
		if e.Error == "" {
			t.Errorf("resource error without a message: %+v", e)
		}
		for _, name := range []string{"broken.yaml", "unknown-type.yaml"} {
			if strings.Contains(e.File, name) {
				files[name] = e.Error
			}
		}
	}
	for _, name := range []string{"broken.yaml", "unknown-type.yaml"} {
		if _, ok := files[name]; !ok {
			t.Errorf("resourceErrors %+v do not name %s", md.ResourceErrors, name)
		}
	}
	var names []string
	for _, c := range md.Components {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if want := []string{storeName, "store2", "store3"}; !slices.Equal(names, want) {
		t.Errorf("components = %v, want %v (the valid ones, without the scoped-out one)", names, want)
	}
	for _, e := range md.ResourceErrors {
		if strings.Contains(e.File, "scoped.yaml") || strings.Contains(e.File, "multi.yaml") {
			t.Errorf("unexpected resource error for a valid file: %+v", e)
		}
	}
	httpSave(t, s, saveJSON{Key: "in-store3", Value: 3})
	expectStatus(t, "GET from store3", s.do(t, http.MethodGet, "/v1.0/state/store3/in-store3", nil), http.StatusNoContent)
	expectError(t, "GET from the scoped-out store", s.do(t, http.MethodGet, "/v1.0/state/notmine/k", nil), http.StatusBadRequest, "ERR_STATE_STORE_NOT_FOUND")
	// The valid store works.
	httpSave(t, s, saveJSON{Key: "k", Value: "still works"})
	httpExpectValue(t, s, "k", `"still works"`)
	expectStatus(t, "healthz", s.do(t, http.MethodGet, "/v1.0/healthz", nil), http.StatusNoContent)
}
