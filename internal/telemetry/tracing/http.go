package tracing

import (
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// HTTPMiddleware gives every request of the HTTP API (health probes
// aside, as daprd) a server span: a child of the caller's traceparent when
// it is valid, the root of a new trace when it is absent or malformed (a
// malformed one is never passed on). The request context carries the span
// and p; the response carries the span's traceparent unless the handler
// sets one (an invoked app's). A nil p returns next.
func (p *Provider) HTTPMiddleware(next http.Handler) http.Handler {
	if p == nil {
		return next
	}
	if p.off {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tp := r.Header["Traceparent"]; len(tp) != 1 || !validTraceParent(tp[0]) {
				// A new trace, not sampled, for this call and the hops
				// after it; the caller's tracestate belongs to a context
				// that is not continued.
				r.Header["Traceparent"] = []string{FormatTraceParent(childOf(trace.SpanContext{}))}
				delete(r.Header, "Tracestate")
			}
			next.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/healthz") {
			next.ServeHTTP(w, r)
			return
		}
		ctx := p.ContextWith(r.Context())
		if tp := r.Header["Traceparent"]; len(tp) > 0 {
			if sc, ok := ParseTraceParent(tp[0], strings.Join(r.Header["Tracestate"], ",")); ok {
				ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
			}
		}
		ctx, span := p.start(ctx, "dapr.http", trace.SpanKindServer)
		w.Header()["Traceparent"] = []string{FormatTraceParent(span.SpanContext())}
		r = r.WithContext(ctx)
		if !span.IsRecording() {
			next.ServeHTTP(w, r)
			span.End()
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		// (A panic does not get here: the span is then never exported.)
		name, kv := httpSpan(r, sw.status)
		span.SetName(name)
		span.SetAttributes(kv...)
		if sw.status >= 500 {
			span.SetStatus(otelcodes.Error, http.StatusText(sw.status))
		}
		span.End()
	})
}

// httpSpan names a served request's span and lists its attributes, with
// daprd's names: CallLocal/<app>/<method> for invocations, the route
// pattern otherwise (CallActor/<type>/<method> for actor calls), and the
// building block's db.*, messaging.* or dapr.actor attributes.
func httpSpan(r *http.Request, status int) (string, []attribute.KeyValue) {
	api := r.Method + " " + r.URL.Path
	kv := make([]attribute.KeyValue, 0, 8)
	kv = append(kv, attribute.String(AttrDaprProtocol, "http"), attribute.String(AttrDaprAPI, api),
		attribute.String(AttrDaprStatusCode, statusString(status)), attribute.String(AttrHTTPMethod, r.Method))
	if app, method, ok := invokeTarget(r); ok {
		kv = append(kv, attribute.String(AttrRPCService, ServiceInvocation), attribute.String(AttrNetPeerName, app), attribute.String(AttrDaprInvokeMethod, method))
		return "CallLocal/" + app + "/" + method, kv
	}
	name := r.Pattern
	if name == "" {
		name = api
	}
	if strings.Contains(r.Pattern, "/actors/") {
		typ, id := r.PathValue("type"), r.PathValue("id")
		kv = append(kv, attribute.String(AttrDaprActor, typ+"."+id), attribute.String(AttrDaprActorType, typ), attribute.String(AttrDaprActorID, id))
		if strings.Contains(r.Pattern, "/method/") {
			method := r.PathValue("method")
			kv = append(kv, attribute.String(AttrRPCService, ServiceInvocation), attribute.String(AttrNetPeerName, typ+"."+id), attribute.String(AttrDaprInvokeMethod, method))
			return "CallActor/" + typ + "/" + method, kv
		}
		if strings.Contains(r.Pattern, "/state") {
			kv = append(kv, attribute.String(AttrDBSystem, SystemState), attribute.String(AttrDBName, "actor"))
		}
		return name, kv
	}
	switch {
	case strings.Contains(r.Pattern, "/state/"):
		kv = append(kv, attribute.String(AttrDBSystem, SystemState), attribute.String(AttrDBName, r.PathValue("store")))
	case strings.Contains(r.Pattern, "/bindings/"):
		kv = append(kv, attribute.String(AttrDBSystem, SystemBindings), attribute.String(AttrDBName, r.PathValue("name")))
	case strings.Contains(r.Pattern, "/secrets/"):
		kv = append(kv, attribute.String(AttrDBSystem, "secrets"), attribute.String(AttrDBName, r.PathValue("store")))
	case strings.Contains(r.Pattern, "/publish"):
		kv = append(kv, attribute.String(AttrMessagingSystem, SystemPubsub), attribute.String(AttrMessagingDestination, r.PathValue("topic")), attribute.String(AttrDaprPubsub, r.PathValue("pubsub")))
	}
	return name, kv
}

// statusString is the status code as text (daprd's dapr.status_code is a
// string), without allocating for the usual ones.
func statusString(code int) string {
	switch code {
	case http.StatusOK:
		return "200"
	case http.StatusNoContent:
		return "204"
	case http.StatusBadRequest:
		return "400"
	case http.StatusNotFound:
		return "404"
	case http.StatusInternalServerError:
		return "500"
	}
	return strconv.Itoa(code)
}

// invokeTarget is the app and method of a service invocation request:
// /v1.0/invoke/{app}/method/{method...}, or any path with dapr-app-id.
func invokeTarget(r *http.Request) (app, method string, ok bool) {
	if rest, found := strings.CutPrefix(r.URL.Path, "/v1.0/invoke/"); found {
		app, method, ok = strings.Cut(rest, "/method/")
		return app, method, ok
	}
	if id := r.Header.Get("dapr-app-id"); id != "" && (r.Pattern == "" || r.Pattern == "/") {
		return id, strings.TrimPrefix(r.URL.Path, "/"), true
	}
	return "", "", false
}

// statusWriter records the status code of a sampled request.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Flush keeps streamed responses (invocations) streaming.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
