package invoke_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// TestInvokeHTTP calls an HTTP app through two sidecars, A → B → app, with
// every verb, nested paths, query strings and headers.
func TestInvokeHTTP(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	cases := []struct {
		verb, path, body string
		wantPath, wantQ  string
	}{
		{"GET", "/v1.0/invoke/b/method/orders", "", "/orders", ""},
		{"POST", "/v1.0/invoke/b/method/orders/42/items?x=1&y=a%20b&y=c", `{"n":1}`, "/orders/42/items", "x=1&y=a%20b&y=c"},
		{"PUT", "/v1.0/invoke/b/method/a/b/c/d", "put body", "/a/b/c/d", ""},
		{"DELETE", "/v1.0/invoke/b/method/orders/42?force=true", "", "/orders/42", "force=true"},
		{"PATCH", "/v1.0/invoke/b/method/p", "patch", "/p", ""},
		{"OPTIONS", "/v1.0/invoke/b/method/opt", "", "/opt", ""},
		{"GET", "/v1.0/invoke/b.default/method/ns", "", "/ns", ""},
		{"GET", "/v1.0/invoke/b/method/x/../y/./z", "", "/y/z", ""},
	}
	for _, c := range cases {
		t.Run(c.verb+" "+c.path, func(t *testing.T) {
			r := do(t, c.verb, a.URL+c.path, strBody(c.body),
				"Content-Type", "application/json", "X-Custom", "custom-value",
				"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				"dapr-api-token", "secret")
			if r.Status != http.StatusOK {
				t.Fatalf("status %d, body %s", r.Status, r.Body)
			}
			s := decodeSeen(t, r)
			if s.Method != c.verb || s.Path != c.wantPath || s.Query != c.wantQ || s.Body != c.body {
				t.Fatalf("app saw %s %s ?%s body %q; want %s %s ?%s body %q", s.Method, s.Path, s.Query, s.Body, c.verb, c.wantPath, c.wantQ, c.body)
			}
			for k, want := range map[string]string{
				"X-Custom":           "custom-value",
				"Dapr-Caller-App-Id": "a",
				"Dapr-Callee-App-Id": "b",
				"Traceparent":        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			} {
				if got := s.Header.Get(k); got != want {
					t.Errorf("app saw %s: %q, want %q", k, got, want)
				}
			}
			if c.body != "" && s.Header.Get("Content-Type") != "application/json" {
				t.Errorf("app saw Content-Type %q", s.Header.Get("Content-Type"))
			}
			for _, k := range []string{"Dapr-Api-Token", "Destination-App-Id", "Dapr-App-Id"} {
				if v := s.Header.Get(k); v != "" {
					t.Errorf("app saw %s: %q, want it stripped", k, v)
				}
			}
			if c.body != "" && s.Length != int64(len(c.body)) {
				t.Errorf("app saw Content-Length %d, want %d", s.Length, len(c.body))
			}
			if r.Header.Get("X-App") != "echo" || r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("response headers %v lack the app's", r.Header)
			}
		})
	}
}

// TestInvokeEscapedPath: escaped characters reach the app escaped once.
func TestInvokeEscapedPath(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	r := do(t, "GET", a.URL+"/v1.0/invoke/b/method/files/a%20b/c%2Bd%C3%A9?q=%2F", nil)
	s := decodeSeen(t, r)
	if s.Path != "/files/a b/c+dé" || s.RawPath != "/files/a%20b/c+d%C3%A9" || s.Query != "q=%2F" {
		t.Fatalf("app saw path %q raw %q query %q", s.Path, s.RawPath, s.Query)
	}
	// daprd rejects '?' and '#' once decoded, before they can confuse the app.
	r = do(t, "GET", a.URL+"/v1.0/invoke/b/method/a%3Fb", nil)
	if r.Status != http.StatusInternalServerError || r.errorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "forbidden character") {
		t.Fatalf("method with an encoded '?': %d %s", r.Status, r.Body)
	}
}

// TestInvokeStatusPassThrough: the app's status, headers and body come back
// verbatim, errors included.
func TestInvokeStatusPassThrough(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	for _, code := range []int{200, 201, 204, 301, 400, 404, 409, 500, 503} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			req, _ := http.NewRequest("POST", a.URL+fmt.Sprintf("/v1.0/invoke/b/method/status/%d", code), strings.NewReader("x"))
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			want := fmt.Sprintf("reply %d", code)
			if code == 204 {
				want = ""
			}
			if resp.StatusCode != code || string(body) != want || resp.Header.Get("X-Reply") != "yes" {
				t.Fatalf("got %d %q X-Reply=%q, want %d %q", resp.StatusCode, body, resp.Header.Get("X-Reply"), code, want)
			}
		})
	}
}

func TestInvokeUnknownApp(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	r := do(t, "GET", a.URL+"/v1.0/invoke/nobody/method/x", nil)
	if r.Status != http.StatusInternalServerError || r.errorCode() != "ERR_DIRECT_INVOKE" {
		t.Fatalf("got %d %s, want 500 ERR_DIRECT_INVOKE", r.Status, r.Body)
	}
	if msg := string(r.Body); !strings.Contains(msg, "failed to invoke, id: nobody") || !strings.Contains(msg, `app id \"nobody\"`) {
		t.Fatalf("message does not name the app id: %s", r.Body)
	}
	r = do(t, "GET", a.URL+"/v1.0/invoke/a.b.c/method/x", nil)
	if r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "invalid app id") {
		t.Fatalf("bad app id: %d %s", r.Status, r.Body)
	}
}

// TestInvokeForms: the dapr-app-id header and the Basic-auth forms reach
// the same app; without an app id, 404 ERR_DIRECT_INVOKE.
func TestInvokeForms(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	r := do(t, "POST", a.URL+"/orders/7?v=1", strBody("hdr"), "dapr-app-id", "b")
	if s := decodeSeen(t, r); s.Path != "/orders/7" || s.Query != "v=1" || s.Body != "hdr" || s.Header.Get("Dapr-App-Id") != "" {
		t.Fatalf("header form: app saw %+v", s)
	}
	// A Dapr API path with the header is still the API, as in daprd.
	if r := do(t, "GET", a.URL+"/v1.0/metadata", nil, "dapr-app-id", "b"); r.Status != 200 || !strings.Contains(string(r.Body), `"id":"a"`) {
		t.Fatalf("metadata with dapr-app-id: %d %s", r.Status, r.Body)
	}
	// An unclean path is not redirected.
	if s := decodeSeen(t, do(t, "POST", a.URL+"/x//y/../z", strBody("p"), "dapr-app-id", "b")); s.Path != "/x/z" || s.Method != "POST" {
		t.Fatalf("unclean header-form path: app saw %s %s", s.Method, s.Path)
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("dapr-app-id:b"))
	if s := decodeSeen(t, do(t, "PUT", a.URL+"/basic/path", strBody("b"), "Authorization", auth)); s.Path != "/basic/path" || s.Method != "PUT" {
		t.Fatalf("basic-auth form: app saw %+v", s)
	}
	if r := do(t, "GET", a.URL+"/no/app/id", nil); r.Status != http.StatusNotFound || r.errorCode() != "ERR_DIRECT_INVOKE" {
		t.Fatalf("no app id: %d %s", r.Status, r.Body)
	}
	if r := do(t, "GET", a.URL+"/v1.0/invoke/b/nomethod", nil); r.Status != http.StatusNotFound || r.errorCode() != "ERR_DIRECT_INVOKE" {
		t.Fatalf("invoke path without /method/: %d %s", r.Status, r.Body)
	}
	if s := decodeSeen(t, do(t, "GET", a.URL+"/v1.0/invoke/b/method/", nil)); s.Path != "/" {
		t.Fatalf("empty method: app saw %q", s.Path)
	}
}

// TestInvokeSelf: a sidecar invoking its own app id goes straight to its
// app; without an app that is an error.
func TestInvokeSelf(t *testing.T) {
	port := echoApp(t)
	b := mechatest.Start(t, mechatest.App("self", port, ""))
	if s := decodeSeen(t, do(t, "POST", b.URL+"/v1.0/invoke/self/method/me", strBody("hi"))); s.Path != "/me" || s.Body != "hi" || s.Header.Get("Dapr-Caller-App-Id") != "self" {
		t.Fatalf("self-invocation: app saw %+v", s)
	}
	lone := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "lone" })
	r := do(t, "GET", lone.URL+"/v1.0/invoke/lone/method/x", nil)
	if r.Status != 500 || r.errorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "app channel not initialized") {
		t.Fatalf("self-invocation without an app: %d %s", r.Status, r.Body)
	}
	// Calling a sidecar that has no app: daprd's callee error.
	r = do(t, "GET", b.URL+"/v1.0/invoke/lone/method/x", nil)
	if r.Status != 500 || !strings.Contains(string(r.Body), "app channel is not initialized") {
		t.Fatalf("remote without an app: %d %s", r.Status, r.Body)
	}
}

// TestInvokeAppNotStartedYet: calls fail while the app does not listen and
// succeed once it does.
func TestInvokeAppNotStartedYet(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	a, _ := pair(t, port, "")
	r := do(t, "GET", a.URL+"/v1.0/invoke/b/method/early", nil)
	if r.Status != 500 || r.errorCode() != "ERR_DIRECT_INVOKE" {
		t.Fatalf("before the app listens: %d %s", r.Status, r.Body)
	}
	l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d was taken meanwhile: %v", port, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "late") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	mechatest.Eventually(t, 10*time.Second, func() error {
		r := do(t, "GET", a.URL+"/v1.0/invoke/b/method/late", nil)
		if r.Status != 200 || string(r.Body) != "late" {
			return fmt.Errorf("%d %s", r.Status, r.Body)
		}
		return nil
	})
}

// TestInvokeAppCrash: an app that dies mid-request makes the call fail
// promptly, before or after it started answering.
func TestInvokeAppCrash(t *testing.T) {
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/midway" {
			w.Header().Set("Content-Length", "1000000")
			w.WriteHeader(200)
			io.WriteString(w, strings.Repeat("x", 100000))
			w.(http.Flusher).Flush()
		}
		// Drop the connection, as a crashing process does.
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	a, _ := pair(t, port, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/before", strBody("x"))
		if r.Status != 500 || r.errorCode() != "ERR_DIRECT_INVOKE" {
			t.Errorf("crash before answering: %d %s", r.Status, r.Body)
		}
		resp, err := client.Get(a.URL + "/v1.0/invoke/b/method/midway")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("crash midway: the body was read without an error")
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("calls to a crashing app hang")
	}
}

// TestInvokeCancelPropagates: when the caller gives up, the app's request
// context is cancelled (through both sidecars).
func TestInvokeCancelPropagates(t *testing.T) {
	cancelled := make(chan struct{})
	started := make(chan struct{})
	var once sync.Once
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			once.Do(func() { close(cancelled) })
		case <-time.After(30 * time.Second):
		}
	}))
	a, _ := pair(t, port, "")
	c := &http.Client{Timeout: 300 * time.Millisecond}
	_, err := c.Get(a.URL + "/v1.0/invoke/b/method/slow")
	if err == nil {
		t.Fatal("the call did not time out")
	}
	<-started
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the app's request context was not cancelled after the caller timed out")
	}
}

// TestInvokeConcurrent: 200 callers at once all get their own answer.
func TestInvokeConcurrent(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			body := fmt.Sprintf("caller-%d", i)
			req, _ := http.NewRequest("POST", fmt.Sprintf("%s/v1.0/invoke/b/method/c/%d", a.URL, i), strings.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || !strings.Contains(string(b), `"body":"`+body+`"`) || !strings.Contains(string(b), fmt.Sprintf(`"path":"/c/%d"`, i)) {
				t.Errorf("caller %d: %d %s", i, resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
}

// TestInvokeRoundRobin: calls spread over the instances of an app id, and
// an instance that stops is left out.
func TestInvokeRoundRobin(t *testing.T) {
	var calls counter
	app := func(name string) int {
		return mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.add(name)
			io.WriteString(w, name)
		}))
	}
	b1 := mechatest.Start(t, mechatest.App("b", app("one"), ""))
	mechatest.Start(t, mechatest.App("b", app("two"), ""))
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "a" })
	for range 20 {
		if r := do(t, "GET", a.URL+"/v1.0/invoke/b/method/rr", nil); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	if one, two := calls.get("one"), calls.get("two"); one < 8 || two < 8 {
		t.Fatalf("calls per instance: one=%d two=%d, want them balanced", one, two)
	}
	// Stop one instance: every call still succeeds.
	if err := b1.RT.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	before := calls.get("two")
	for range 10 {
		if r := do(t, "GET", a.URL+"/v1.0/invoke/b/method/rr", nil); r.Status != 200 || string(r.Body) != "two" {
			t.Fatalf("after stopping one instance: %d %s", r.Status, r.Body)
		}
	}
	if calls.get("two") != before+10 {
		t.Fatalf("instance two got %d calls, want 10", calls.get("two")-before)
	}
}
