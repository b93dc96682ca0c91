package invoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// seen is what an app received.
type seen struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	RawPath string      `json:"rawPath"`
	Query   string      `json:"query"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
	Length  int64       `json:"length"`
}

// echoApp answers every request with 200 and the JSON of what it saw,
// except under /status/{code}, which answers that code with the header
// X-Reply and the body "reply <code>".
func echoApp(t testing.TB) int {
	return mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// The tests that cut bodies short expect this.
			http.Error(w, "app reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			w.Header().Set("X-Reply", "yes")
			w.Header().Set("Content-Type", "text/plain")
			n, _ := strconv.Atoi(code)
			w.WriteHeader(n)
			_, _ = io.WriteString(w, "reply "+code)
			return
		}
		b, _ := json.Marshal(seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery, Header: r.Header, Body: string(body), Length: r.ContentLength})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-App", "echo")
		_, _ = w.Write(b)
	}))
}

// pair starts sidecar "a" (no app) and sidecar "b" in front of an app on
// appPort; configure may adjust both.
func pair(t *testing.T, appPort int, protocol string, configure ...func(*runtime.Options)) (a, b *mechatest.Sidecar) {
	t.Helper()
	b = mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("b", appPort, protocol)(o)
		for _, c := range configure {
			c(o)
		}
	})
	a = mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = "a"
		for _, c := range configure {
			c(o)
		}
	})
	return a, b
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) errorCode() string {
	var e struct {
		ErrorCode string `json:"errorCode"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.ErrorCode
}

var client = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

// do sends a request; headers are name, value pairs.
func do(t testing.TB, method, url string, body io.Reader, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func decodeSeen(t testing.TB, r response) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal(r.Body, &s); err != nil {
		t.Fatalf("app answer %d %q: %v", r.Status, r.Body, err)
	}
	return s
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// counter counts calls per key.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}

func (c *counter) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

func strBody(s string) io.Reader {
	if s == "" {
		return nil
	}
	return bytes.NewBufferString(s)
}
