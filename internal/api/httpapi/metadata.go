package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
)

// The JSON shape of GET /v1.0/metadata, field for field as daprd writes it,
// plus resourceErrors (Mecha's addition: resources that failed to load).
type metadataResponse struct {
	ID                      string                   `json:"id,omitempty"`
	RuntimeVersion          string                   `json:"runtimeVersion,omitempty"`
	EnabledFeatures         []string                 `json:"enabledFeatures,omitempty"`
	ActiveActorsCount       []actorCountJSON         `json:"actors,omitempty"`
	Components              []componentJSON          `json:"components,omitempty"`
	Extended                map[string]string        `json:"extended,omitempty"`
	AppConnectionProperties *appConnectionJSON       `json:"appConnectionProperties,omitempty"`
	ActorRuntime            actorRuntimeJSON         `json:"actorRuntime"`
	Subscriptions           []subscriptionJSON       `json:"subscriptions,omitempty"`
	ResourceErrors          []metadata.ResourceError `json:"resourceErrors,omitempty"`
}

// subscriptionJSON is daprd's metadataResponsePubsubSubscription.
type subscriptionJSON struct {
	PubsubName      string             `json:"pubsubname"`
	Topic           string             `json:"topic"`
	Metadata        map[string]string  `json:"metadata,omitempty"`
	Rules           []subscriptionRule `json:"rules,omitempty"`
	DeadLetterTopic string             `json:"deadLetterTopic"`
	Type            string             `json:"type"`
}

type subscriptionRule struct {
	Match string `json:"match,omitempty"`
	Path  string `json:"path,omitempty"`
}

type componentJSON struct {
	Name         string   `json:"name"`
	Type         string   `json:"type"`
	Version      string   `json:"version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

type appConnectionJSON struct {
	Port           int         `json:"port,omitempty"`
	Protocol       string      `json:"protocol,omitempty"`
	ChannelAddress string      `json:"channelAddress,omitempty"`
	MaxConcurrency int         `json:"maxConcurrency,omitempty"`
	Health         *healthJSON `json:"health,omitempty"`
}

type healthJSON struct {
	HealthCheckPath     string `json:"healthCheckPath,omitempty"`
	HealthProbeInterval string `json:"healthProbeInterval,omitempty"`
	HealthProbeTimeout  string `json:"healthProbeTimeout,omitempty"`
	HealthThreshold     int    `json:"healthThreshold,omitempty"`
}

type actorRuntimeJSON struct {
	Status       string           `json:"runtimeStatus"`
	ActiveActors []actorCountJSON `json:"activeActors,omitempty"`
	HostReady    bool             `json:"hostReady"`
	Placement    string           `json:"placement,omitempty"`
	// PlacementTableVersion is Mecha's addition: the version of the
	// placement table the sidecar applied last.
	PlacementTableVersion uint64 `json:"placementTableVersion,omitempty"`
}

type actorCountJSON struct {
	Type  string `json:"type"`
	Count int    `json:"count"`
}

func (a *api) getMetadata(w http.ResponseWriter, r *http.Request) {
	s := a.Metadata.Snapshot()
	resp := metadataResponse{
		ID:              s.AppID,
		RuntimeVersion:  s.RuntimeVersion,
		EnabledFeatures: s.EnabledFeatures,
		Extended:        s.Extended,
		ActorRuntime: actorRuntimeJSON{
			Status: s.ActorRuntime.Status, HostReady: s.ActorRuntime.HostReady,
			Placement: s.ActorRuntime.Placement, PlacementTableVersion: s.ActorRuntime.TableVersion,
		},
		ResourceErrors: s.ResourceErrors,
	}
	for _, c := range s.ActorRuntime.ActiveActors {
		resp.ActorRuntime.ActiveActors = append(resp.ActorRuntime.ActiveActors, actorCountJSON(c))
	}
	resp.ActiveActorsCount = resp.ActorRuntime.ActiveActors
	for _, c := range s.Components {
		resp.Components = append(resp.Components, componentJSON(c))
	}
	for _, sub := range s.Subscriptions {
		j := subscriptionJSON{PubsubName: sub.PubsubName, Topic: sub.Topic, Metadata: sub.Metadata, DeadLetterTopic: sub.DeadLetterTopic, Type: sub.Type}
		for _, r := range sub.Rules {
			j.Rules = append(j.Rules, subscriptionRule(r))
		}
		resp.Subscriptions = append(resp.Subscriptions, j)
	}
	if app := s.App; app.Port != 0 || app.Protocol != "" {
		resp.AppConnectionProperties = &appConnectionJSON{Port: app.Port, Protocol: app.Protocol, ChannelAddress: app.ChannelAddress, MaxConcurrency: app.MaxConcurrency}
		if app.HealthProbeInterval != "" {
			resp.AppConnectionProperties.Health = &healthJSON{app.HealthCheckPath, app.HealthProbeInterval, app.HealthProbeTimeout, app.HealthThreshold}
		}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		apierr.WriteHTTP(w, apierr.Internal.Wrap(err, "encoding metadata"))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *api) putMetadata(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if err := a.Metadata.SetExtended(r.PathValue("key"), string(body)); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
