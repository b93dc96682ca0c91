package grpcapi

import (
	"context"
	"encoding/json"
	"strconv"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/apierr"
)

// ResourceErrorsKey is the extended-metadata key under which gRPC clients
// find resources that failed to load (JSON array), since the proto has no
// field for them.
const ResourceErrorsKey = "mecha.resourceErrors"

// PlacementTableVersionKey is the extended-metadata key under which gRPC
// clients find the placement table version the sidecar applied last.
const PlacementTableVersionKey = "mecha.placementTableVersion"

// GetMetadata reports the sidecar's metadata.
func (s *Server) GetMetadata(ctx context.Context, _ *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	m := s.Metadata.Snapshot()
	out := &runtimev1.GetMetadataResponse{
		Id:               m.AppID,
		RuntimeVersion:   m.RuntimeVersion,
		EnabledFeatures:  m.EnabledFeatures,
		ExtendedMetadata: m.Extended,
		ActorRuntime: &runtimev1.ActorRuntime{
			RuntimeStatus: runtimev1.ActorRuntime_ActorRuntimeStatus(runtimev1.ActorRuntime_ActorRuntimeStatus_value[m.ActorRuntime.Status]),
			HostReady:     m.ActorRuntime.HostReady,
			Placement:     m.ActorRuntime.Placement,
		},
	}
	for _, c := range m.ActorRuntime.ActiveActors {
		ac := &runtimev1.ActiveActorsCount{Type: c.Type, Count: int32(c.Count)}
		out.ActorRuntime.ActiveActors = append(out.ActorRuntime.ActiveActors, ac)
		out.ActiveActorsCount = append(out.ActiveActorsCount, ac)
	}
	if v := m.ActorRuntime.TableVersion; v > 0 {
		out.ExtendedMetadata[PlacementTableVersionKey] = strconv.FormatUint(v, 10)
	}
	for _, c := range m.Components {
		out.RegisteredComponents = append(out.RegisteredComponents, &runtimev1.RegisteredComponents{Name: c.Name, Type: c.Type, Version: c.Version, Capabilities: c.Capabilities})
	}
	for _, sub := range m.Subscriptions {
		ps := &runtimev1.PubsubSubscription{
			PubsubName: sub.PubsubName, Topic: sub.Topic, Metadata: sub.Metadata, DeadLetterTopic: sub.DeadLetterTopic,
			Type:  runtimev1.PubsubSubscriptionType(runtimev1.PubsubSubscriptionType_value[sub.Type]),
			Rules: &runtimev1.PubsubSubscriptionRules{},
		}
		for _, r := range sub.Rules {
			ps.Rules.Rules = append(ps.Rules.Rules, &runtimev1.PubsubSubscriptionRule{Match: r.Match, Path: r.Path})
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	if app := m.App; app.Port != 0 || app.Protocol != "" {
		out.AppConnectionProperties = &runtimev1.AppConnectionProperties{Port: int32(app.Port), Protocol: app.Protocol, ChannelAddress: app.ChannelAddress, MaxConcurrency: int32(app.MaxConcurrency)}
		if app.HealthProbeInterval != "" {
			out.AppConnectionProperties.Health = &runtimev1.AppConnectionHealthProperties{HealthCheckPath: app.HealthCheckPath, HealthProbeInterval: app.HealthProbeInterval, HealthProbeTimeout: app.HealthProbeTimeout, HealthThreshold: int32(app.HealthThreshold)}
		}
	}
	if len(m.ResourceErrors) > 0 {
		b, err := json.Marshal(m.ResourceErrors)
		if err == nil {
			out.ExtendedMetadata[ResourceErrorsKey] = string(b)
		}
	}
	return out, nil
}

// SetMetadata sets an extended metadata attribute.
func (s *Server) SetMetadata(ctx context.Context, in *runtimev1.SetMetadataRequest) (*emptypb.Empty, error) {
	if err := s.Metadata.SetExtended(in.GetKey(), in.GetValue()); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// Shutdown asks the sidecar to shut down gracefully.
func (s *Server) Shutdown(ctx context.Context, _ *runtimev1.ShutdownRequest) (*emptypb.Empty, error) {
	if s.Deps.Shutdown != nil {
		s.Deps.Shutdown()
	}
	return empty, nil
}
