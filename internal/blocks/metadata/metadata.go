// Package metadata is the metadata building block: what the sidecar reports
// about itself (app id, loaded components and their capabilities, resource
// errors, app connection) and the free-form "extended" attributes that
// clients such as the dapr CLI write with PUT /v1.0/metadata/{key}.
package metadata

import (
	"maps"
	"sort"
	"sync"

	"github.com/mecha-dev/mecha/internal/apierr"
)

// Component describes one loaded component.
type Component struct {
	Name         string
	Type         string
	Version      string
	Capabilities []string
}

// ResourceError is a resource that failed to load or initialise.
type ResourceError struct {
	File    string `json:"file,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Message string `json:"error"`
}

// AppConnection describes how the sidecar reaches its app.
type AppConnection struct {
	Port           int
	Protocol       string
	ChannelAddress string
	MaxConcurrency int
	// HealthCheckPath and friends are empty when app health checks are off.
	HealthCheckPath     string
	HealthProbeInterval string
	HealthProbeTimeout  string
	HealthThreshold     int
}

// Subscription is a pub/sub subscription the sidecar serves.
type Subscription struct {
	PubsubName      string
	Topic           string
	Metadata        map[string]string
	Rules           []SubscriptionRule
	DeadLetterTopic string
	// Type is DECLARATIVE, PROGRAMMATIC or STREAMING.
	Type string
}

// SubscriptionRule is one routing rule; Match is empty for the default.
type SubscriptionRule struct {
	Match string
	Path  string
}

// ActorRuntime is the actor runtime's state as daprd reports it.
type ActorRuntime struct {
	// Status is DISABLED, INITIALIZING or RUNNING.
	Status       string
	ActiveActors []ActorCount
	HostReady    bool
	// Placement is "placement: connected" or "placement: disconnected".
	Placement string
	// TableVersion is the placement table version applied last (Mecha's
	// addition).
	TableVersion uint64
}

// ActorCount is the number of active actors of a type.
type ActorCount struct {
	Type  string
	Count int
}

// Snapshot is a consistent copy of everything the block reports.
type Snapshot struct {
	AppID           string
	RuntimeVersion  string
	EnabledFeatures []string
	Components      []Component
	ResourceErrors  []ResourceError
	Extended        map[string]string
	App             AppConnection
	ActorStatus     string
	// ActorRuntime is the actor runtime's state (Status DISABLED when
	// there is none).
	ActorRuntime  ActorRuntime
	Subscriptions []Subscription
}

// Block holds the sidecar's metadata.
type Block struct {
	mu       sync.RWMutex
	snap     Snapshot
	extended map[string]string
	// subscriptions lists the pub/sub subscriptions at snapshot time.
	subscriptions func() []Subscription
	// actors reports the actor runtime at snapshot time.
	actors func() ActorRuntime
}

// New returns a block for appID.
func New(appID, runtimeVersion string, app AppConnection) *Block {
	return &Block{
		snap:     Snapshot{AppID: appID, RuntimeVersion: runtimeVersion, App: app, ActorStatus: "DISABLED"},
		extended: map[string]string{},
	}
}

// AddComponent records a loaded component.
func (b *Block) AddComponent(c Component) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snap.Components = append(b.snap.Components, c)
	sort.Slice(b.snap.Components, func(i, j int) bool { return b.snap.Components[i].Name < b.snap.Components[j].Name })
}

// AddResourceError records a resource that could not be used.
func (b *Block) AddResourceError(e ResourceError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snap.ResourceErrors = append(b.snap.ResourceErrors, e)
}

// SetExtended sets an extended attribute. The key must be non-empty.
func (b *Block) SetExtended(key, value string) error {
	if key == "" {
		return apierr.MetadataSet.New("metadata key is empty")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.extended[key] = value
	return nil
}

// SetSubscriptions sets where the pub/sub subscriptions are read from;
// they change at run time (programmatic and streaming subscriptions).
func (b *Block) SetSubscriptions(list func() []Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subscriptions = list
}

// SetActorRuntime sets where the actor runtime's state is read from.
func (b *Block) SetActorRuntime(f func() ActorRuntime) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.actors = f
}

// Snapshot returns a copy of the current metadata.
func (b *Block) Snapshot() Snapshot {
	b.mu.RLock()
	s := b.snap
	s.Components = append([]Component(nil), b.snap.Components...)
	s.ResourceErrors = append([]ResourceError(nil), b.snap.ResourceErrors...)
	s.EnabledFeatures = append([]string(nil), b.snap.EnabledFeatures...)
	s.Extended = maps.Clone(b.extended)
	subs := b.subscriptions
	act := b.actors
	b.mu.RUnlock()
	if s.Extended == nil {
		s.Extended = map[string]string{}
	}
	// Asked outside the lock: the source has locks of its own.
	if subs != nil {
		s.Subscriptions = subs()
	}
	s.ActorRuntime = ActorRuntime{Status: s.ActorStatus}
	if act != nil {
		s.ActorRuntime = act()
		s.ActorStatus = s.ActorRuntime.Status
	}
	return s
}
