package grpcapi

import (
	"context"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
)

// GetSecret reads one secret's key/values.
func (s *Server) GetSecret(ctx context.Context, in *runtimev1.GetSecretRequest) (*runtimev1.GetSecretResponse, error) {
	data, err := s.Secrets.Get(ctx, secrets.GetRequest{Store: in.GetStoreName(), Name: in.GetKey(), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.GetSecretResponse{Data: data}, nil
}

// GetBulkSecret reads every secret of a store that the scopes allow.
func (s *Server) GetBulkSecret(ctx context.Context, in *runtimev1.GetBulkSecretRequest) (*runtimev1.GetBulkSecretResponse, error) {
	all, err := s.Secrets.BulkGet(ctx, secrets.BulkGetRequest{Store: in.GetStoreName(), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	out := &runtimev1.GetBulkSecretResponse{}
	if all != nil {
		out.Data = make(map[string]*runtimev1.SecretResponse, len(all))
		for name, kv := range all {
			out.Data[name] = &runtimev1.SecretResponse{Secrets: kv}
		}
	}
	return out, nil
}
