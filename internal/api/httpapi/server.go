// Package httpapi is the Dapr v1 HTTP API: it decodes requests, calls a
// building block and encodes the answer. It holds no business logic; errors
// come from the blocks as *apierr.Error and are written by apierr.WriteHTTP.
package httpapi

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/configuration"
	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

// Health reports the sidecar's readiness.
type Health interface {
	// Outbound returns nil once the building-block APIs can serve.
	Outbound() error
	// Ready returns nil once components and the app are ready.
	Ready() error
}

// Deps are the blocks and settings the HTTP API serves.
type Deps struct {
	AppID         string
	State         *state.Block
	Metadata      *metadata.Block
	Secrets       *secrets.Block
	Lock          *lock.Block
	Configuration *configuration.Block
	Bindings      *bindings.Block
	// PubSub is publish/subscribe; nil answers ERR_PUBSUB_NOT_CONFIGURED.
	PubSub *pubsub.Block
	// Invoke is service invocation; nil answers "invoke API is not ready".
	Invoke *invoke.Block
	// Actors is the actor runtime; nil answers ERR_ACTOR_RUNTIME_NOT_FOUND.
	Actors *actors.Block
	Health Health
	// Shutdown asks the runtime to shut down gracefully; it must not block.
	Shutdown func()
	// MaxBodySize limits request bodies, in bytes.
	MaxBodySize int64
	Logger      *slog.Logger
	// APILogging logs one line per request at info level.
	APILogging bool
}

type api struct {
	Deps
}

// Handler returns the HTTP handler for the Dapr v1 API.
func Handler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{Deps: d}
	mux := http.NewServeMux()

	// State.
	mux.HandleFunc("GET /v1.0/state/{store}/{key}", a.getState)
	mux.HandleFunc("DELETE /v1.0/state/{store}/{key}", a.deleteState)
	mux.HandleFunc("POST /v1.0/state/{store}", a.saveState)
	mux.HandleFunc("PUT /v1.0/state/{store}", a.saveState)
	mux.HandleFunc("POST /v1.0/state/{store}/bulk", a.bulkGetState)
	mux.HandleFunc("PUT /v1.0/state/{store}/bulk", a.bulkGetState)
	mux.HandleFunc("POST /v1.0/state/{store}/transaction", a.transaction)
	mux.HandleFunc("PUT /v1.0/state/{store}/transaction", a.transaction)

	// Other building blocks, one file each.
	a.secretsRoutes(mux)
	a.lockRoutes(mux)
	a.configurationRoutes(mux)
	a.bindingsRoutes(mux)
	a.pubsubRoutes(mux)
	a.actorsRoutes(mux)

	// Metadata.
	mux.HandleFunc("GET /v1.0/metadata", a.getMetadata)
	mux.HandleFunc("PUT /v1.0/metadata/{key}", a.putMetadata)

	// Health and lifecycle.
	mux.HandleFunc("GET /v1.0/healthz", a.healthz)
	mux.HandleFunc("GET /v1.0/healthz/outbound", a.healthzOutbound)
	mux.HandleFunc("POST /v1.0/shutdown", a.shutdown)

	// Everything else is service invocation by header (dapr-app-id or
	// Basic auth), or a 404 ERR_DIRECT_INVOKE without one, as in daprd.
	mux.HandleFunc("/", a.invoke)

	// /v1.0/invoke/… bypasses the router, whose path cleaning would
	// redirect methods with "//" or "..".
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isInvoke(r) {
			a.invoke(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	return a.middleware(root)
}

// middleware applies, in order: panic recovery, trailing-slash tolerance,
// the body size limit and optional API logging.
func (a *api) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.Logger.Error("panic in HTTP handler", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				apierr.WriteHTTP(w, apierr.Internal.New("internal error"))
			}
		}()
		if r.ContentLength > a.MaxBodySize {
			apierr.WriteHTTP(w, tooLarge(a.MaxBodySize))
			return
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			r.Body = http.MaxBytesReader(w, r.Body, a.MaxBodySize)
		}
		if len(r.URL.Path) > 1 && strings.HasSuffix(r.URL.Path, "/") {
			r.URL.Path = strings.TrimRight(r.URL.Path, "/")
			r.URL.RawPath = ""
		}
		if !a.APILogging {
			next.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		a.Logger.Info("HTTP API called", "type", "request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func tooLarge(limit int64) error {
	return apierr.BodyTooLarge.New("request body is larger than the limit of %d bytes (raise it with --dapr-http-max-request-size / --max-body-size)", limit)
}

// readBody reads the whole (limited) request body, in one allocation when
// the client sent a Content-Length.
func (a *api) readBody(r *http.Request) ([]byte, error) {
	var b []byte
	var err error
	if n := r.ContentLength; n > 0 && n <= a.MaxBodySize {
		b = make([]byte, n)
		_, err = io.ReadFull(r.Body, b)
	} else {
		b, err = io.ReadAll(r.Body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(mbe.Limit)
		}
		return nil, apierr.BodyRead.Wrap(err, "failed to read request body")
	}
	return b, nil
}

// requestMetadata collects "metadata.<k>" query parameters; q may be nil
// when the request has no query string.
func requestMetadata(q url.Values) map[string]string {
	var md map[string]string
	for k, vs := range q {
		if name, ok := strings.CutPrefix(k, "metadata."); ok && len(vs) > 0 {
			if md == nil {
				md = make(map[string]string)
			}
			md[name] = vs[0]
		}
	}
	return md
}

// query parses the query string once per request; nil when there is none
// (the common case, which then costs nothing).
func query(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	return r.URL.Query()
}

// jsonContentType is shared by every response: net/http never modifies a
// header value slice, and assigning it skips canonicalisation.
var jsonContentType = []string{"application/json"}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
