package grpcapi

import (
	"context"
	"maps"
	"strings"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/bindings"
)

// traceKeys are copied from the call's gRPC metadata into the binding
// metadata, overriding the request's own, as daprd does.
var traceKeys = []string{"traceparent", "tracestate", "baggage"}

// InvokeBinding calls an output binding. The response metadata is also sent
// as "metadata.<k>" response headers, even on failure, as daprd does.
func (s *Server) InvokeBinding(ctx context.Context, in *runtimev1.InvokeBindingRequest) (*runtimev1.InvokeBindingResponse, error) {
	md := make(map[string]string, len(in.GetMetadata())+1)
	maps.Copy(md, in.GetMetadata())
	if incoming, ok := metadata.FromIncomingContext(ctx); ok {
		for _, k := range traceKeys {
			if v := incoming.Get(k); len(v) > 0 {
				md[k] = strings.Join(v, ",")
			}
		}
	}
	resp, err := s.Bindings.Invoke(ctx, bindings.InvokeRequest{
		Name: in.GetName(), Operation: in.GetOperation(), Data: in.GetData(), Metadata: md,
	})
	if resp != nil && len(resp.Metadata) > 0 {
		pairs := make([]string, 0, 2*len(resp.Metadata))
		for k, v := range resp.Metadata {
			pairs = append(pairs, "metadata."+k, v)
		}
		_ = grpc.SetHeader(ctx, metadata.Pairs(pairs...))
	}
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	out := &runtimev1.InvokeBindingResponse{}
	if resp != nil {
		out.Data, out.Metadata = resp.Data, resp.Metadata
	}
	return out, nil
}
