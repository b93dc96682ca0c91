// Package components holds what every component kind shares: the metadata a
// component is configured with, the dependencies the runtime hands it, and a
// registry that maps a Dapr component type name (for example "state.redis")
// to a constructor.
//
// It is public on purpose: third parties implement component contracts
// (components/<kind>) and register them, the way database/sql drivers do,
// without importing anything under internal/.
package components

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metadata is the configuration of one component instance, decoded from a
// Component resource. Property names are matched case-insensitively, as Dapr
// does.
type Metadata struct {
	// Name is the component's resource name (metadata.name), e.g. "statestore".
	Name string
	// Type is the component type, e.g. "state.redis".
	Type string
	// Version is the component version, e.g. "v1".
	Version string
	// Properties are the resolved spec.metadata values.
	Properties map[string]string
}

// Get returns the property named key (case-insensitive) and whether it is set.
func (m Metadata) Get(key string) (string, bool) {
	if v, ok := m.Properties[key]; ok {
		return v, true
	}
	for k, v := range m.Properties {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// String returns the property key, or def when it is missing or empty.
func (m Metadata) String(key, def string) string {
	if v, ok := m.Get(key); ok && v != "" {
		return v
	}
	return def
}

// Int returns the property key parsed as an integer, or def when it is
// missing or empty.
func (m Metadata) Int(key string, def int) (int, error) {
	v, ok := m.Get(key)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("metadata %q: %q is not an integer", key, v)
	}
	return n, nil
}

// Bool returns the property key parsed as a boolean ("true", "1", "yes",
// "on" are true), or def when it is missing or empty.
func (m Metadata) Bool(key string, def bool) (bool, error) {
	v, ok := m.Get(key)
	if !ok || v == "" {
		return def, nil
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "y", "on":
		return true, nil
	case "false", "0", "no", "n", "off":
		return false, nil
	}
	return false, fmt.Errorf("metadata %q: %q is not a boolean", key, v)
}

// Duration returns the property key parsed as a Go duration; a bare integer
// is read in the given unit (Dapr accepts both "5s" and "5"). def is returned
// when the property is missing or empty.
func (m Metadata) Duration(key string, unit, def time.Duration) (time.Duration, error) {
	v, ok := m.Get(key)
	if !ok || v == "" {
		return def, nil
	}
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * unit, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("metadata %q: %q is not a duration", key, v)
	}
	return d, nil
}

// Deps are what the runtime gives a component constructor.
type Deps struct {
	// Logger is pre-tagged with the component's name and type.
	Logger *slog.Logger
	// DataDir is a directory the component may use for files (embedded
	// stores); empty when none is configured.
	DataDir string
}

// Factory builds a new, uninitialised component instance.
type Factory[T any] func(Deps) T

// Registry maps component type names ("state.redis") and versions ("v1") to
// factories. It is an instance, not a global: a test binary can build as many
// as it needs.
type Registry[T any] struct {
	mu        sync.RWMutex
	factories map[string]Factory[T]
}

// NewRegistry returns an empty registry.
func NewRegistry[T any]() *Registry[T] {
	return &Registry[T]{factories: map[string]Factory[T]{}}
}

// Register adds a factory for typeName at the given versions (default "v1").
// Registering the same name and version twice is a programming error and
// panics.
func (r *Registry[T]) Register(typeName string, f Factory[T], versions ...string) {
	if len(versions) == 0 {
		versions = []string{"v1"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range versions {
		k := registryKey(typeName, v)
		if _, dup := r.factories[k]; dup {
			panic("components: duplicate registration of " + k)
		}
		r.factories[k] = f
	}
}

// Create builds an instance of typeName at version (empty means "v1").
func (r *Registry[T]) Create(typeName, version string, deps Deps) (T, error) {
	if version == "" {
		version = "v1"
	}
	r.mu.RLock()
	f, ok := r.factories[registryKey(typeName, version)]
	r.mu.RUnlock()
	if !ok {
		var zero T
		if r.Has(typeName) {
			return zero, fmt.Errorf("component type %s has no version %s", typeName, version)
		}
		return zero, fmt.Errorf("unknown component type %s (registered: %s)", typeName, strings.Join(r.Types(), ", "))
	}
	return f(deps), nil
}

// Has reports whether any version of typeName is registered.
func (r *Registry[T]) Has(typeName string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	prefix := strings.ToLower(typeName) + "/"
	for k := range r.factories {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

// Types lists the registered type names, sorted, without versions.
func (r *Registry[T]) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for k := range r.factories {
		name := k[:strings.LastIndexByte(k, '/')]
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func registryKey(typeName, version string) string {
	return strings.ToLower(typeName) + "/" + strings.ToLower(version)
}
