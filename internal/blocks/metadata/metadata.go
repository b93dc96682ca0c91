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
}

// Block holds the sidecar's metadata.
type Block struct {
	mu       sync.RWMutex
	snap     Snapshot
	extended map[string]string
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

// Snapshot returns a copy of the current metadata.
func (b *Block) Snapshot() Snapshot {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s := b.snap
	s.Components = append([]Component(nil), b.snap.Components...)
	s.ResourceErrors = append([]ResourceError(nil), b.snap.ResourceErrors...)
	s.EnabledFeatures = append([]string(nil), b.snap.EnabledFeatures...)
	s.Extended = maps.Clone(b.extended)
	if s.Extended == nil {
		s.Extended = map[string]string{}
	}
	return s
}
