package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Configuration is a Dapr Configuration resource (kind: Configuration) given
// with --config. Sections are added here as the features that read them are
// built; unknown sections are ignored, as daprd does.
type Configuration struct {
	Name string
	File string
	Spec ConfigurationSpec
}

// ConfigurationSpec holds the sections Mecha applies.
type ConfigurationSpec struct {
	Secrets        SecretsSpec        `yaml:"secrets"`
	NameResolution NameResolutionSpec `yaml:"nameResolution"`
	Features       []FeatureSpec      `yaml:"features"`
	// Tracing is spec.tracing; nil (the section is absent) leaves tracing
	// off. See internal/telemetry/tracing.
	Tracing *TracingSpec `yaml:"tracing"`
	// Metric is spec.metric and MetricsAlias spec.metrics (see Metrics).
	Metric       *MetricSpec `yaml:"metric"`
	MetricsAlias *MetricSpec `yaml:"metrics"`
	// MTLS is spec.mtls and AccessControl spec.accessControl (security.go);
	// nil when absent.
	MTLS          *MTLSSpec          `yaml:"mtls"`
	AccessControl *AccessControlSpec `yaml:"accessControl"`
}

// TracingSpec is spec.tracing, as daprd reads it.
type TracingSpec struct {
	// SamplingRate is the probability, "0" to "1", that a trace started
	// here is recorded; a sampled parent is followed either way. "0"
	// records nothing but still propagates trace context.
	SamplingRate string      `yaml:"samplingRate"`
	Stdout       bool        `yaml:"stdout"`
	Zipkin       *ZipkinSpec `yaml:"zipkin"`
	Otel         *OtelSpec   `yaml:"otel"`
}

// ZipkinSpec is spec.tracing.zipkin.
type ZipkinSpec struct {
	EndpointAddress string `yaml:"endpointAddress"`
}

// OtelSpec is spec.tracing.otel: an OTLP endpoint.
type OtelSpec struct {
	// Protocol is grpc or http (OTLP/HTTP protobuf).
	Protocol        string `yaml:"protocol"`
	EndpointAddress string `yaml:"endpointAddress"`
	// IsSecure defaults to true, as in daprd.
	IsSecure *bool `yaml:"isSecure"`
	// Headers are added to every export request.
	Headers []TracingHeader `yaml:"headers"`
	// Timeout bounds one export request (a Go duration, e.g. "10s").
	Timeout string `yaml:"timeout"`
}

// TracingHeader is one OTLP request header: a plain value or, with
// envRef, the value of an environment variable.
type TracingHeader struct {
	Name   string `yaml:"name"`
	Value  string `yaml:"value"`
	EnvRef string `yaml:"envRef"`
}

// SecretsSpec is spec.secrets.
type SecretsSpec struct {
	Scopes []SecretScope `yaml:"scopes"`
}

// SecretScope limits which secrets of one store the app may read.
type SecretScope struct {
	StoreName      string   `yaml:"storeName"`
	DefaultAccess  string   `yaml:"defaultAccess"`
	AllowedSecrets []string `yaml:"allowedSecrets"`
	DeniedSecrets  []string `yaml:"deniedSecrets"`
}

// NameResolutionSpec is spec.nameResolution: which nameresolution.*
// component to use and its free-form configuration.
type NameResolutionSpec struct {
	Component     string         `yaml:"component"`
	Version       string         `yaml:"version"`
	Configuration map[string]any `yaml:"configuration"`
}

// FeatureSpec is one preview-feature switch.
type FeatureSpec struct {
	Name    string `yaml:"name"`
	Enabled bool   `yaml:"enabled"`
}

// LoadConfiguration reads the Configuration resources in files, in order;
// a section set by a later file replaces the same section of an earlier one.
// Unlike component files, a Configuration the user named explicitly that
// cannot be read is an error: the sidecar must not start half-configured.
func LoadConfiguration(files []string) (*Configuration, error) {
	out := &Configuration{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		c, err := ParseConfiguration(f, data)
		if err != nil {
			return nil, err
		}
		out.Name, out.File = c.Name, c.File
		merge(&out.Spec, &c.Spec, c.set)
	}
	return out, nil
}

type parsedConfiguration struct {
	Configuration
	set map[string]bool // spec sections present in the file
}

// ParseConfiguration parses one file holding a Configuration (other
// documents in the file are ignored).
func ParseConfiguration(file string, data []byte) (*parsedConfiguration, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no Configuration resource found", file)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: invalid YAML: %w", file, err)
		}
		var h header
		if err := doc.Decode(&h); err != nil || h.Kind != "Configuration" {
			continue
		}
		if h.APIVersion != "dapr.io/v1alpha1" {
			return nil, fmt.Errorf("%s: Configuration %s: apiVersion %q is not dapr.io/v1alpha1", file, h.Metadata.Name, h.APIVersion)
		}
		var body struct {
			Spec yaml.Node `yaml:"spec"`
		}
		if err := doc.Decode(&body); err != nil {
			return nil, fmt.Errorf("%s: Configuration %s: %w", file, h.Metadata.Name, err)
		}
		pc := &parsedConfiguration{Configuration: Configuration{Name: h.Metadata.Name, File: file}, set: map[string]bool{}}
		if body.Spec.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(body.Spec.Content); i += 2 {
				pc.set[body.Spec.Content[i].Value] = true
			}
			if err := body.Spec.Decode(&pc.Spec); err != nil {
				return nil, fmt.Errorf("%s: Configuration %s: invalid spec: %w", file, h.Metadata.Name, err)
			}
		}
		if err := pc.Spec.validate(); err != nil {
			return nil, fmt.Errorf("%s: Configuration %s: %w", file, h.Metadata.Name, err)
		}
		return pc, nil
	}
}

func merge(dst, src *ConfigurationSpec, set map[string]bool) {
	if set["secrets"] {
		dst.Secrets = src.Secrets
	}
	if set["nameResolution"] {
		dst.NameResolution = src.NameResolution
	}
	if set["features"] {
		dst.Features = src.Features
	}
	if set["metric"] {
		dst.Metric = src.Metric
	}
	if set["metrics"] {
		dst.MetricsAlias = src.MetricsAlias
	}
	if set["tracing"] {
		dst.Tracing = src.Tracing
	}
	if set["mtls"] {
		dst.MTLS = src.MTLS
	}
	if set["accessControl"] {
		dst.AccessControl = src.AccessControl
	}
}

func (s *ConfigurationSpec) validate() error {
	seen := map[string]bool{}
	for i, sc := range s.Secrets.Scopes {
		if sc.StoreName == "" {
			return fmt.Errorf("spec.secrets.scopes[%d] has no storeName", i)
		}
		if seen[sc.StoreName] {
			return fmt.Errorf("spec.secrets.scopes: store %s is listed twice", sc.StoreName)
		}
		seen[sc.StoreName] = true
		switch sc.DefaultAccess {
		case "", "allow", "deny":
		default:
			return fmt.Errorf("spec.secrets.scopes[%d].defaultAccess %q is not allow or deny", i, sc.DefaultAccess)
		}
	}
	if err := s.Metric.validate("metric"); err != nil {
		return err
	}
	if err := s.MetricsAlias.validate("metrics"); err != nil {
		return err
	}
	if err := s.MTLS.validate(); err != nil {
		return err
	}
	if err := s.AccessControl.validate(); err != nil {
		return err
	}
	return s.Tracing.validate()
}

// validate rejects what daprd refuses at start-up (an unknown OTLP
// protocol) and what cannot be parsed; a samplingRate that is not a number
// is left to the tracer, which falls back to daprd's default as daprd does.
func (t *TracingSpec) validate() error {
	if t == nil || t.Otel == nil {
		return nil
	}
	switch t.Otel.Protocol {
	case "", "grpc", "http":
	default:
		return fmt.Errorf("spec.tracing.otel.protocol %q is not grpc or http", t.Otel.Protocol)
	}
	if t.Otel.Timeout != "" {
		if d, err := time.ParseDuration(t.Otel.Timeout); err != nil || d <= 0 {
			return fmt.Errorf("spec.tracing.otel.timeout %q is not a positive duration", t.Otel.Timeout)
		}
	}
	for i, h := range t.Otel.Headers {
		if h.Name == "" {
			return fmt.Errorf("spec.tracing.otel.headers[%d] has no name", i)
		}
	}
	return nil
}

// FeatureEnabled reports whether the preview feature name is switched on.
func (c *Configuration) FeatureEnabled(name string) bool {
	for _, f := range c.Spec.Features {
		if f.Name == name {
			return f.Enabled
		}
	}
	return false
}
