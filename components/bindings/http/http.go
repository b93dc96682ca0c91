// Package http is the bindings.http output binding: each invocation is one
// HTTP request to the configured url, as Dapr's bindings.http does.
//
// The operation is the method (get, head, post, put, patch, delete, options,
// trace; create is POST). Request metadata "path" is appended to the url;
// every metadata key that starts with an upper-case letter is sent as a
// request header (so "Content-Type" and "Authorization" are headers, while
// "path" and "errorIfNot2XX" are not); traceparent and tracestate are
// propagated. The response carries the body as data and, as metadata,
// "statusCode", "status" and every response header. A non-2xx answer is an
// error unless errorIfNot2XX is false; the response metadata still reaches
// the caller.
package http

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
)

// Binding is the HTTP output binding.
type Binding struct {
	log    *slog.Logger
	s      settings
	client *http.Client
	closed atomic.Bool
}

var _ bindings.Output = (*Binding)(nil)

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init reads the metadata and prepares the client; it does not dial.
func (b *Binding) Init(_ context.Context, md components.Metadata) error {
	s, err := parseSettings(md)
	if err != nil {
		return err
	}
	mdcheck.WarnUnknown(b.log, md, "url", "responseTimeout", "errorIfNot2XX", "securityToken", "securityTokenHeader",
		"maxResponseBodySize", "mtlsRootCA", "mtlsClientCert", "mtlsClientKey", "mtlsRenegotiation")
	b.s = s
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 15 * time.Second
	t.TLSClientConfig = s.TLS
	b.client = &http.Client{Transport: t}
	return nil
}

// Operations lists the methods, plus create (POST).
func (b *Binding) Operations() []bindings.Operation {
	return []bindings.Operation{bindings.OperationCreate, "get", "head", "post", "put", "patch", "delete", "options", "trace"}
}

// Invoke sends one request.
func (b *Binding) Invoke(ctx context.Context, req *bindings.InvokeRequest) (*bindings.InvokeResponse, error) {
	if b.client == nil || b.closed.Load() {
		return nil, fmt.Errorf("http binding is not initialised or closed")
	}
	method := strings.ToUpper(string(req.Operation))
	var body io.Reader
	switch method {
	case "CREATE":
		method = http.MethodPost
		body = bytes.NewReader(req.Data)
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		body = bytes.NewReader(req.Data)
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions, http.MethodTrace:
	default:
		return nil, fmt.Errorf("invalid operation: %s", req.Operation)
	}
	u := b.s.URL
	if p := req.Metadata["path"]; p != "" {
		u = strings.TrimRight(u, "/") + "/" + strings.TrimLeft(p, "/")
	}
	errorIfNot2XX := b.s.ErrorIfNot2XX
	if v := req.Metadata["errorIfNot2XX"]; v != "" {
		parsed, err := components.Metadata{Properties: map[string]string{"errorIfNot2XX": v}}.Bool("errorIfNot2XX", true)
		if err != nil {
			return nil, err
		}
		errorIfNot2XX = parsed
	}
	if b.s.ResponseTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.s.ResponseTimeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("building the request for %s: %w", u, err)
	}
	if err := b.setHeaders(hreq, req.Metadata, body != nil); err != nil {
		return nil, err
	}
	resp, err := b.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
	var rd io.Reader = resp.Body
	if b.s.MaxResponseBodySize > 0 {
		rd = io.LimitReader(resp.Body, b.s.MaxResponseBodySize)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading the response of %s %s: %w", method, u, err)
	}
	md := make(map[string]string, len(resp.Header)+2)
	md["statusCode"] = strconv.Itoa(resp.StatusCode)
	md["status"] = resp.Status
	for k, vs := range resp.Header {
		md[k] = strings.Join(vs, ", ")
	}
	out := &bindings.InvokeResponse{Data: data, Metadata: md, ContentType: resp.Header.Get("Content-Type")}
	if errorIfNot2XX && resp.StatusCode/100 != 2 {
		return out, fmt.Errorf("received status code %d", resp.StatusCode)
	}
	return out, nil
}

// setHeaders applies Dapr's header rules: defaults for Content-Type and
// Accept, the security token, metadata keys starting with an upper-case
// letter, and the trace context.
func (b *Binding) setHeaders(r *http.Request, md map[string]string, hasBody bool) error {
	if _, ok := md["Content-Type"]; !ok && hasBody {
		r.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if _, ok := md["Accept"]; !ok {
		r.Header.Set("Accept", "application/json; charset=utf-8")
	}
	if b.s.SecurityToken != "" {
		r.Header.Set(b.s.SecurityTokenHeader, b.s.SecurityToken)
	}
	for k, v := range md {
		if k == "" || k[0] < 'A' || k[0] > 'Z' {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("metadata %q cannot be sent as an HTTP header: invalid name or value", k)
		}
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := md[k]; v != "" && httpguts.ValidHeaderFieldValue(v) {
			r.Header.Set(k, v)
		}
	}
	return nil
}

// Close releases idle connections; it is idempotent.
func (b *Binding) Close() error {
	if b.closed.CompareAndSwap(false, true) && b.client != nil {
		b.client.CloseIdleConnections()
	}
	return nil
}
