package grpcapi

import (
	"context"
	"errors"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/configuration"
)

func configurationItems(items map[string]*cconfig.Item) map[string]*commonv1.ConfigurationItem {
	out := make(map[string]*commonv1.ConfigurationItem, len(items))
	for k, it := range items {
		if it == nil {
			out[k] = &commonv1.ConfigurationItem{}
			continue
		}
		out[k] = &commonv1.ConfigurationItem{Value: it.Value, Version: it.Version, Metadata: it.Metadata}
	}
	return out
}

// GetConfiguration reads items; no keys means every item.
func (s *Server) GetConfiguration(ctx context.Context, in *runtimev1.GetConfigurationRequest) (*runtimev1.GetConfigurationResponse, error) {
	items, err := s.Configuration.Get(ctx, configuration.GetRequest{Store: in.GetStoreName(), Keys: in.GetKeys(), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.GetConfigurationResponse{Items: configurationItems(items)}, nil
}

// GetConfigurationAlpha1 is GetConfiguration.
func (s *Server) GetConfigurationAlpha1(ctx context.Context, in *runtimev1.GetConfigurationRequest) (*runtimev1.GetConfigurationResponse, error) {
	return s.GetConfiguration(ctx, in)
}

// configurationSender is the server side of both SubscribeConfiguration
// streams.
type configurationSender interface {
	Send(*runtimev1.SubscribeConfigurationResponse) error
	Context() context.Context
}

// SubscribeConfiguration streams updates: the first message carries only
// the subscription id, later ones {id, items}. The subscription ends when
// the client cancels the stream, on UnsubscribeConfiguration (the stream
// then ends with OK), or when the sidecar shuts down.
func (s *Server) SubscribeConfiguration(in *runtimev1.SubscribeConfigurationRequest, stream runtimev1.Dapr_SubscribeConfigurationServer) error {
	return s.subscribeConfiguration(in, stream)
}

// SubscribeConfigurationAlpha1 is SubscribeConfiguration.
func (s *Server) SubscribeConfigurationAlpha1(in *runtimev1.SubscribeConfigurationRequest, stream runtimev1.Dapr_SubscribeConfigurationAlpha1Server) error {
	return s.subscribeConfiguration(in, stream)
}

func (s *Server) subscribeConfiguration(in *runtimev1.SubscribeConfigurationRequest, stream configurationSender) error {
	ctx := stream.Context()
	sub, err := s.Configuration.SubscribeStream(ctx, configuration.SubscribeRequest{Store: in.GetStoreName(), Keys: in.GetKeys(), Metadata: in.GetMetadata()})
	if err != nil {
		return apierr.GRPC(err)
	}
	defer sub.Close()
	if err := stream.Send(&runtimev1.SubscribeConfigurationResponse{Id: sub.ID}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return nil
		case e := <-sub.Updates():
			if err := stream.Send(&runtimev1.SubscribeConfigurationResponse{Id: sub.ID, Items: configurationItems(e.Items)}); err != nil {
				return err
			}
		}
	}
}

// UnsubscribeConfiguration ends a subscription by id, whichever transport
// made it; an unknown id is {ok: false, message}, not an error, as in
// daprd.
func (s *Server) UnsubscribeConfiguration(ctx context.Context, in *runtimev1.UnsubscribeConfigurationRequest) (*runtimev1.UnsubscribeConfigurationResponse, error) {
	err := s.Configuration.UnsubscribeID(ctx, in.GetStoreName(), in.GetId())
	if err == nil {
		return &runtimev1.UnsubscribeConfigurationResponse{Ok: true}, nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) && ae.Kind == apierr.ConfigurationUnsubscribe {
		return &runtimev1.UnsubscribeConfigurationResponse{Ok: false, Message: ae.Message}, nil
	}
	return nil, apierr.GRPC(err)
}

// UnsubscribeConfigurationAlpha1 is UnsubscribeConfiguration.
func (s *Server) UnsubscribeConfigurationAlpha1(ctx context.Context, in *runtimev1.UnsubscribeConfigurationRequest) (*runtimev1.UnsubscribeConfigurationResponse, error) {
	return s.UnsubscribeConfiguration(ctx, in)
}
