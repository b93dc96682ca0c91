package sdk

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestSDKAPIToken: a sidecar started with DAPR_API_TOKEN serves a Go SDK
// client that has the same DAPR_API_TOKEN in its environment, and refuses
// one without it (or with another) with Unauthenticated, as daprd does.
// The health endpoint stays open (startSidecar waited on it without a
// token); plain HTTP needs the dapr-api-token header.
func TestSDKAPIToken(t *testing.T) {
	token := "sdk-token-" + uniqueID()
	s := startSidecar(t, sidecarConfig{
		Resources: map[string]string{"statestore.yaml": componentYAML(storeName, "state.in-memory", nil)},
		Env:       []string{"DAPR_API_TOKEN=" + token},
	})

	// The SDK reads DAPR_API_TOKEN when the client is created.
	t.Setenv("DAPR_API_TOKEN", token)
	with := s.sdkClient(t)
	t.Setenv("DAPR_API_TOKEN", "")
	without := s.sdkClient(t)
	t.Setenv("DAPR_API_TOKEN", "not-"+token)
	wrong := s.sdkClient(t)

	must(t, "SaveState with the token", with.SaveState(ctxT(t), storeName, "k", []byte("v"), nil))
	expectValue(t, with, "k", []byte("v"))

	expectCode(t, "SaveState without a token", without.SaveState(ctxT(t), storeName, "k", []byte("x"), nil), codes.Unauthenticated)
	_, err := without.GetState(ctxT(t), storeName, "k", nil)
	expectCode(t, "GetState without a token", err, codes.Unauthenticated)
	expectCode(t, "SaveState with a wrong token", wrong.SaveState(ctxT(t), storeName, "k", []byte("x"), nil), codes.Unauthenticated)
	_, err = wrong.GetMetadata(ctxT(t))
	expectCode(t, "GetMetadata with a wrong token", err, codes.Unauthenticated)
	expectValue(t, with, "k", []byte("v")) // the refused writes changed nothing

	// WithAuthToken sets the token on an existing client.
	without.WithAuthToken(token)
	must(t, "SaveState after WithAuthToken", without.SaveState(ctxT(t), storeName, "k2", []byte("v2"), nil))

	// Plain HTTP: daprd's 401 without the header, the API with it; the
	// health endpoints are open.
	r := s.do(t, "GET", "/v1.0/metadata", nil)
	if r.Status != http.StatusUnauthorized || string(r.Body) != "invalid api token\n" {
		t.Fatalf("GET /v1.0/metadata without a token: %s, want 401 invalid api token", r)
	}
	expectStatus(t, "GET /v1.0/metadata with the token", s.do(t, "GET", "/v1.0/metadata", nil, "dapr-api-token", token), http.StatusOK)
	expectStatus(t, "GET /v1.0/state with the token", s.do(t, "GET", "/v1.0/state/"+storeName+"/k2", nil, "dapr-api-token", token), http.StatusOK)
	expectStatus(t, "GET /v1.0/healthz without a token", s.do(t, "GET", "/v1.0/healthz", nil), http.StatusNoContent)
}
