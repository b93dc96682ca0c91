package http_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	bhttp "github.com/mecha-dev/mecha/components/bindings/http"
)

// echoServer answers every request with its body and, as "Echo-*"
// response headers, its method, path and request headers. A path ending in
// /status/<code> answers that status.
func echoServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h := w.Header()
		h.Set("Echo-Method", r.Method)
		h.Set("Echo-Uri", r.URL.RequestURI())
		for k, v := range r.Header {
			h.Set("Echo-"+k, strings.Join(v, ","))
		}
		status := http.StatusOK
		if i := strings.LastIndex(r.URL.Path, "/status/"); i >= 0 {
			status, _ = strconv.Atoi(r.URL.Path[i+len("/status/"):])
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newBinding(t *testing.T, props map[string]string) bindings.Output {
	t.Helper()
	b := bhttp.New(components.Deps{})
	if err := b.Init(context.Background(), components.Metadata{Name: "web", Type: "bindings.http", Properties: props}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	srv := echoServer(t)
	base := srv.URL + "/base/"
	md := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []bindingstest.OutputCase{
		{
			Name:     "post with path and headers",
			Request:  bindings.InvokeRequest{Operation: "post", Data: []byte(`{"a":1}`), Metadata: md("path", "/items", "X-Custom", "v1", "lower", "not a header")},
			WantData: []byte(`{"a":1}`),
			WantMetadata: md("statusCode", "200", "status", "200 OK", "Echo-Method", "POST", "Echo-Uri", "/base/items",
				"Echo-X-Custom", "v1", "Echo-Content-Type", "application/json; charset=utf-8", "Echo-Accept", "application/json; charset=utf-8"),
			Check: func(t *testing.T, r *bindings.InvokeResponse) {
				if _, ok := r.Metadata["Echo-Lower"]; ok {
					t.Errorf("a lower-case metadata key was sent as a header: %v", r.Metadata)
				}
			},
		},
		{
			Name:         "create is POST",
			Request:      bindings.InvokeRequest{Operation: "create", Data: []byte(`"hi"`)},
			WantData:     []byte(`"hi"`),
			WantMetadata: md("Echo-Method", "POST", "Echo-Uri", "/base/"),
		},
		{
			Name:         "get with query and content type override",
			Request:      bindings.InvokeRequest{Operation: "get", Metadata: md("path", "things?x=1&y=2", "Accept", "text/plain")},
			WantData:     []byte{},
			WantMetadata: md("Echo-Method", "GET", "Echo-Uri", "/base/things?x=1&y=2", "Echo-Accept", "text/plain"),
		},
		{Name: "head", Request: bindings.InvokeRequest{Operation: "head"}, WantData: []byte{}, WantMetadata: md("Echo-Method", "HEAD", "statusCode", "200")},
		{Name: "put", Request: bindings.InvokeRequest{Operation: "put", Data: []byte("p")}, WantData: []byte("p"), WantMetadata: md("Echo-Method", "PUT")},
		{Name: "patch", Request: bindings.InvokeRequest{Operation: "patch", Data: []byte("q")}, WantData: []byte("q"), WantMetadata: md("Echo-Method", "PATCH")},
		{Name: "delete", Request: bindings.InvokeRequest{Operation: "delete", Metadata: md("path", "items/1")}, WantMetadata: md("Echo-Method", "DELETE", "Echo-Uri", "/base/items/1")},
		{Name: "options", Request: bindings.InvokeRequest{Operation: "options"}, WantMetadata: md("Echo-Method", "OPTIONS")},
		{Name: "trace", Request: bindings.InvokeRequest{Operation: "trace"}, WantMetadata: md("Echo-Method", "TRACE")},
		{
			Name:         "trace context",
			Request:      bindings.InvokeRequest{Operation: "get", Metadata: md("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate", "k=v")},
			WantMetadata: md("Echo-Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "Echo-Tracestate", "k=v"),
		},
		{Name: "non-2xx is an error", Request: bindings.InvokeRequest{Operation: "get", Metadata: md("path", "status/404")}, WantErr: "received status code 404"},
		{
			Name:         "errorIfNot2XX false",
			Request:      bindings.InvokeRequest{Operation: "get", Metadata: md("path", "status/503", "errorIfNot2XX", "false")},
			WantMetadata: md("statusCode", "503", "status", "503 Service Unavailable"),
		},
		{Name: "invalid header value", Request: bindings.InvokeRequest{Operation: "get", Metadata: md("X-Bad", "a\nb")}, WantErr: `"X-Bad"`},
	}
	bindingstest.RunOutput(t, func(t *testing.T) bindings.Output {
		return newBinding(t, map[string]string{"url": base})
	}, bindingstest.OutputOptions{
		Operations: []bindings.Operation{"create", "get", "head", "post", "put", "patch", "delete", "options", "trace"},
		Cases:      cases,
	})
}

func TestErrorKeepsMetadata(t *testing.T) {
	b := newBinding(t, map[string]string{"url": echoServer(t).URL})
	resp, err := b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: "get", Metadata: map[string]string{"path": "status/418"}})
	if err == nil || !strings.Contains(err.Error(), "418") {
		t.Fatalf("Invoke error = %v, want received status code 418", err)
	}
	if resp == nil || resp.Metadata["statusCode"] != "418" || resp.Metadata["Echo-Method"] != "GET" {
		t.Fatalf("response with the error = %+v, want statusCode 418 and the headers", resp)
	}
}

func TestComponentSettings(t *testing.T) {
	var gotToken string
	slow := make(chan struct{})
	t.Cleanup(func() { close(slow) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotToken = r.Header.Get("X-Token")
		if r.URL.Path == "/slow" {
			select {
			case <-slow:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte(strings.Repeat("x", 100)))
	}))
	t.Cleanup(srv.Close)
	b := newBinding(t, map[string]string{
		"url": srv.URL, "securityToken": "s3cret", "securityTokenHeader": "X-Token",
		"maxResponseBodySize": "10", "responseTimeout": "200ms", "errorIfNot2XX": "true",
	})
	resp, err := b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: "get", Metadata: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	if gotToken != "s3cret" || len(resp.Data) != 10 {
		t.Fatalf("token %q, body %d bytes; want s3cret and 10 bytes", gotToken, len(resp.Data))
	}
	start := time.Now()
	_, err = b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: "get", Metadata: map[string]string{"path": "slow"}})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("slow request: err %v after %v, want a timeout after about 200ms", err, time.Since(start))
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]string
		want  []string
	}{
		{"missing url", map[string]string{}, []string{`"url"`, "required"}},
		{"not http", map[string]string{"url": "ftp://example.com"}, []string{`"url"`}},
		{"no host", map[string]string{"url": "http://"}, []string{`"url"`}},
		{"bad timeout", map[string]string{"url": "http://x", "responseTimeout": "soon"}, []string{`"responseTimeout"`}},
		{"bad bool", map[string]string{"url": "http://x", "errorIfNot2XX": "perhaps"}, []string{`"errorIfNot2XX"`}},
		{"token without header", map[string]string{"url": "http://x", "securityToken": "t"}, []string{`"securityToken"`}},
		{"bad size", map[string]string{"url": "http://x", "maxResponseBodySize": "lots"}, []string{`"maxResponseBodySize"`}},
		{"bad root CA", map[string]string{"url": "https://x", "mtlsRootCA": "/no/such/file.pem"}, []string{`"mtlsRootCA"`}},
		{"half client cert", map[string]string{"url": "https://x", "mtlsClientCert": "x"}, []string{`"mtlsClientCert"`}},
		{"bad renegotiation", map[string]string{"url": "https://x", "mtlsRenegotiation": "Sometimes"}, []string{`"mtlsRenegotiation"`}},
		{"several at once", map[string]string{"responseTimeout": "x", "errorIfNot2XX": "x"}, []string{`"url"`, `"responseTimeout"`, `"errorIfNot2XX"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := bhttp.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: tt.props})
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init error %q does not mention %s", err, w)
				}
			}
		})
	}
}
