// Package guard is what protects the sidecar's servers before a request
// reaches an API handler: the Dapr API token (DAPR_API_TOKEN) checked on
// every call to the public HTTP and gRPC APIs, and the limits and timeouts
// every server is built with (Limits).
//
// The token check is one layer, not a per-handler concern: an HTTP handler
// wrapper and a pair of gRPC interceptors that the runtime installs on the
// public servers. The gRPC stream interceptor also covers the transparent
// gRPC proxy, which is the API server's unknown-service handler. Answers
// follow daprd (pkg/api/http/middlewares.go, pkg/api/grpc/auth.go): HTTP
// 401 with the plain-text body "invalid api token", gRPC Unauthenticated
// with daprd's message and ErrorInfo; only GET /v1.0/healthz and GET
// /v1.0/healthz/outbound are open without a token. Unlike daprd, the
// presented token is compared in constant time.
package guard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Names daprd uses for the tokens.
const (
	// TokenHeader carries a token: the HTTP header and the gRPC metadata
	// key, from clients to the sidecar and from the sidecar to its app.
	TokenHeader = invokemsg.APITokenHeader
	// APITokenEnv holds the token clients must present to the sidecar.
	APITokenEnv = "DAPR_API_TOKEN"
	// AppAPITokenEnv holds the token the sidecar presents to its app.
	AppAPITokenEnv = "APP_API_TOKEN"
)

// Messages of daprd's answers to a call without the right token.
const (
	httpUnauthorized = "invalid api token"
	grpcNoMetadata   = "missing metadata in request"
	grpcMissing      = "missing api token in request metadata"
	grpcMismatch     = "authentication error: api token mismatch"
)

// token is a configured API token, kept as its SHA-256 digest so that a
// presented value is compared in time that depends on neither its content
// nor its length.
type token struct{ sum [sha256.Size]byte }

func newToken(s string) *token { return &token{sum: sha256.Sum256([]byte(s))} }

func (t *token) matches(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(t.sum[:], sum[:]) == 1
}

// HTTP wraps the public HTTP API so that every request must carry the
// dapr-api-token header with tok, except daprd's two health endpoints.
// Other requests get daprd's 401 "invalid api token". The header is
// removed before next sees the request, so it never travels further (to
// another app, say). An empty tok returns next unchanged: no token, no
// check, as in daprd.
func HTTP(tok string, next http.Handler) http.Handler {
	if tok == "" {
		return next
	}
	t := newToken(tok)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthEndpoint(r) && !t.matches(r.Header.Get(TokenHeader)) {
			http.Error(w, httpUnauthorized, http.StatusUnauthorized)
			return
		}
		r.Header.Del(TokenHeader)
		next.ServeHTTP(w, r)
	})
}

// healthEndpoint reports daprd's exemptions: GET of /v1.0/healthz and
// /v1.0/healthz/outbound, leading or trailing slashes aside. Probes must
// work without the secret; nothing else, metadata included, is exempt.
func healthEndpoint(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	switch strings.Trim(r.URL.Path, "/") {
	case "v1.0/healthz", "v1.0/healthz/outbound":
		return true
	}
	return false
}

// GRPC returns the server options that make every call to a gRPC server,
// unary or streaming, known service or not, carry the dapr-api-token
// metadata with tok; none when tok is empty. The runtime gives them to the
// public API server only: the internal (sidecar-to-sidecar) server is for
// mTLS to protect.
func GRPC(tok string) []grpc.ServerOption {
	if tok == "" {
		return nil
	}
	t := newToken(tok)
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := t.check(ctx)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := t.check(ss.Context())
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}

// check verifies the call's token and returns the call's context without
// it, so that handlers that pass metadata on never forward the caller's
// credential. Errors are daprd's: Unauthenticated, message "Unauthorized",
// with an ErrorInfo saying which check failed.
func (t *token) check(ctx context.Context) (context.Context, error) {
	vals := metadata.ValueFromIncomingContext(ctx, TokenHeader)
	if len(vals) == 0 {
		if _, ok := metadata.FromIncomingContext(ctx); !ok {
			return ctx, unauthenticated(grpcNoMetadata)
		}
		return ctx, unauthenticated(grpcMissing)
	}
	if !t.matches(vals[0]) {
		return ctx, unauthenticated(grpcMismatch)
	}
	md, _ := metadata.FromIncomingContext(ctx) // a copy
	delete(md, TokenHeader)
	return metadata.NewIncomingContext(ctx, md), nil
}

func unauthenticated(detail string) error {
	return invokemsg.ErrorFromHTTPStatus(http.StatusUnauthorized, []byte(detail))
}

// authedStream is a server stream whose context no longer holds the token.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
