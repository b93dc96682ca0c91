package guard_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mecha-dev/mecha/internal/api/guard"
)

// TestHTTPTokenWrapper drives the wrapper alone: which requests pass, what
// a refused one gets, and that the token never reaches the handler.
func TestHTTPTokenWrapper(t *testing.T) {
	var reached int
	var sawToken []string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		sawToken = append(sawToken, r.Header.Values("dapr-api-token")...)
		w.WriteHeader(http.StatusTeapot)
	})
	h := guard.HTTP("s3cret", next)
	cases := []struct {
		method, path string
		token        []string // header values sent
		pass         bool
	}{
		{"GET", "/v1.0/state/s/k", nil, false},
		{"GET", "/v1.0/state/s/k", []string{""}, false},
		{"GET", "/v1.0/state/s/k", []string{"wrong"}, false},
		{"GET", "/v1.0/state/s/k", []string{"s3cre"}, false},           // a prefix
		{"GET", "/v1.0/state/s/k", []string{"s3cret "}, false},         // longer
		{"GET", "/v1.0/state/s/k", []string{"S3CRET"}, false},          // case matters
		{"GET", "/v1.0/state/s/k", []string{"wrong", "s3cret"}, false}, // the first value counts, as in daprd
		{"GET", "/v1.0/state/s/k", []string{"s3cret"}, true},
		{"GET", "/v1.0/state/s/k", []string{"s3cret", "other"}, true},
		{"POST", "/v1.0/invoke/app/method/x", []string{"s3cret"}, true},
		{"GET", "/v1.0/metadata", nil, false}, // not exempt, as in daprd
		{"PUT", "/v1.0/metadata/k", nil, false},
		{"POST", "/v1.0/shutdown", nil, false},
		{"GET", "/", nil, false},
		{"GET", "/v1.0/healthz", nil, true},
		{"GET", "/v1.0/healthz/", nil, true},
		{"GET", "/v1.0/healthz/outbound", nil, true},
		{"GET", "/v1.0/healthz/outbound/", nil, true},
		{"GET", "/v1.0/healthz?appid=x", nil, true},
		{"GET", "/v1.0/healthz", []string{"wrong"}, true},
		{"HEAD", "/v1.0/healthz", nil, false}, // only GET is exempt
		{"POST", "/v1.0/healthz", nil, false},
		{"GET", "/v1.0/healthz/other", nil, false},
		{"GET", "/v1.0-alpha1/healthz", nil, false},
		{"GET", "/v1.0/healthzx", nil, false},
	}
	for _, c := range cases {
		reached, sawToken = 0, nil
		req := httptest.NewRequest(c.method, c.path, nil)
		for _, v := range c.token {
			req.Header.Add("Dapr-Api-Token", v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		body, _ := io.ReadAll(res.Body)
		if c.pass {
			if reached != 1 || res.StatusCode != http.StatusTeapot {
				t.Errorf("%s %s token %q: status %d, handler reached %d times; want it passed", c.method, c.path, c.token, res.StatusCode, reached)
			}
			if len(sawToken) != 0 {
				t.Errorf("%s %s: the handler saw dapr-api-token %q; it must be removed", c.method, c.path, sawToken)
			}
			continue
		}
		if reached != 0 {
			t.Errorf("%s %s token %q: reached the handler", c.method, c.path, c.token)
		}
		// daprd: http.Error(w, "invalid api token", 401).
		if res.StatusCode != http.StatusUnauthorized || string(body) != "invalid api token\n" ||
			res.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s %s token %q: %d %q (%s), want daprd's 401 \"invalid api token\"", c.method, c.path, c.token, res.StatusCode, body, res.Header.Get("Content-Type"))
		}
	}
}

// TestHTTPNoToken: without a configured token the handler is used as is,
// and a token a client sends anyway is left alone (the invoke API drops it
// itself).
func TestHTTPNoToken(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := guard.HTTP("", next); got == nil {
		t.Fatal("nil handler")
	}
	rec := httptest.NewRecorder()
	guard.HTTP("", next).ServeHTTP(rec, httptest.NewRequest("GET", "/v1.0/metadata", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("without a token: %d", rec.Code)
	}
	if opts := guard.GRPC(""); len(opts) != 0 {
		t.Fatalf("GRPC(\"\") = %d options, want none", len(opts))
	}
}

// BenchmarkHTTPToken is the wrapper's cost per request with a token set
// (compare BenchmarkHTTPNoToken: the handler alone).
func BenchmarkHTTPToken(b *testing.B) { benchHTTP(b, "s3cret") }

func BenchmarkHTTPNoToken(b *testing.B) { benchHTTP(b, "") }

func benchHTTP(b *testing.B, tok string) {
	h := guard.HTTP(tok, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("GET", "/v1.0/state/s/k", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		req.Header.Set("Dapr-Api-Token", "s3cret")
		h.ServeHTTP(w, req)
	}
}
