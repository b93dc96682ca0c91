// Package config reads Dapr resources — Component YAML today, Configuration,
// Resiliency and Subscription as the building blocks that use them arrive —
// from --resources-path folders.
//
// Loading never aborts on one bad file: every problem becomes a
// ResourceError naming the file, the resource and the reason, and the
// rest of the resources load. The runtime logs these errors and shows them in
// the metadata API.
package config

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ObjectMeta is the metadata block shared by every resource.
type ObjectMeta struct {
	Name      string `yaml:"name" json:"name"`
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
}

// header is what every resource document starts with.
type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   ObjectMeta `yaml:"metadata"`
	Scopes     []string   `yaml:"scopes"`
}

// Component is a Dapr Component resource (apiVersion dapr.io/v1alpha1).
type Component struct {
	ObjectMeta
	Spec   ComponentSpec
	Auth   Auth
	Scopes []string
	// File is the path the component was read from.
	File string
}

// ComponentSpec is the spec of a Component.
type ComponentSpec struct {
	Type         string         `yaml:"type"`
	Version      string         `yaml:"version"`
	IgnoreErrors bool           `yaml:"ignoreErrors"`
	InitTimeout  string         `yaml:"initTimeout"`
	Metadata     []MetadataItem `yaml:"metadata"`
}

// Auth names the secret store that resolves secretKeyRef values.
type Auth struct {
	SecretStore string `yaml:"secretStore"`
}

// MetadataItem is one spec.metadata entry.
type MetadataItem struct {
	Name string `yaml:"name"`
	// Value is the literal value; numbers and booleans are kept in their
	// YAML spelling, structured values as JSON, as Dapr does.
	Value        DynamicValue `yaml:"value"`
	SecretKeyRef SecretKeyRef `yaml:"secretKeyRef"`
	EnvRef       string       `yaml:"envRef"`
}

// SecretKeyRef points at a secret in the component's auth.secretStore.
type SecretKeyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// DynamicValue is a metadata value written as any YAML scalar or structure.
type DynamicValue struct {
	String string
	Set    bool
}

// UnmarshalYAML keeps scalars verbatim and turns structures into JSON.
func (v *DynamicValue) UnmarshalYAML(n *yaml.Node) error {
	v.Set = true
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!null" {
			v.String = ""
			return nil
		}
		v.String = n.Value
		return nil
	}
	var anyv any
	if err := n.Decode(&anyv); err != nil {
		return err
	}
	b, err := json.Marshal(anyv)
	if err != nil {
		return fmt.Errorf("metadata value: %w", err)
	}
	v.String = string(b)
	return nil
}

// InitTimeout returns spec.initTimeout, or def when unset.
func (c *Component) InitTimeout(def time.Duration) (time.Duration, error) {
	if c.Spec.InitTimeout == "" {
		return def, nil
	}
	d, err := time.ParseDuration(c.Spec.InitTimeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("spec.initTimeout %q is not a positive duration", c.Spec.InitTimeout)
	}
	return d, nil
}

// Kind returns the building block of the component type: "state" for
// "state.redis", "secretstores" for "secretstores.local.file".
func (c *Component) Kind() string {
	k, _, _ := strings.Cut(c.Spec.Type, ".")
	return k
}

// Version returns spec.version, defaulting to "v1".
func (c *Component) Version() string {
	if c.Spec.Version == "" {
		return "v1"
	}
	return c.Spec.Version
}

// InScope reports whether appID may load a resource with these scopes.
func InScope(scopes []string, appID string) bool {
	if len(scopes) == 0 {
		return true
	}
	for _, s := range scopes {
		if strings.TrimSpace(s) == appID {
			return true
		}
	}
	return false
}
