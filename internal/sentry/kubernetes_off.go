//go:build !k8s

package sentry

import (
	"context"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// KubernetesOptions enable the KUBERNETES validator, which needs client-go:
// binaries built without -tags k8s leave it out (it doubles the binary).
type KubernetesOptions struct{}

func (s *Server) kubeIdentity(context.Context, *sentryv1.SignCertificateRequest) (spiffe.ID, error) {
	return spiffe.ID{}, status.Error(codes.InvalidArgument, "the requested validator is not enabled (this mecha was built without -tags k8s)")
}
