package runfile

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// rawShared holds the fields both the common section and each app accept
// (the dapr CLI's SharedRunConfig), under the names the dapr CLI reads.
type rawShared struct {
	ConfigFilePath     string            `yaml:"configFilePath"`
	AppProtocol        string            `yaml:"appProtocol"`
	APIListenAddresses string            `yaml:"apiListenAddresses"`
	LogLevel           string            `yaml:"logLevel"`
	AppMaxConcurrency  int               `yaml:"appMaxConcurrency"`
	ResourcesPath      string            `yaml:"resourcesPath"` // deprecated by Dapr, still read
	ResourcesPaths     []string          `yaml:"resourcesPaths"`
	MaxBodySize        string            `yaml:"maxBodySize"`
	MaxRequestSizeMB   int               `yaml:"daprHTTPMaxRequestSize"` // older spelling, in MB
	EnableAPILogging   bool              `yaml:"enableApiLogging"`
	Env                map[string]string `yaml:"env"`
	AppLogDestination  string            `yaml:"appLogDestination"`
	SidecarLogDest     string            `yaml:"daprdLogDestination"`
	// App health checks, in daprd's units (0: daprd's default).
	EnableAppHealthCheck   bool   `yaml:"enableAppHealthCheck"`
	AppHealthCheckPath     string `yaml:"appHealthCheckPath"`
	AppHealthProbeInterval int    `yaml:"appHealthProbeInterval"` // seconds
	AppHealthProbeTimeout  int    `yaml:"appHealthProbeTimeout"`  // milliseconds
	AppHealthThreshold     int    `yaml:"appHealthThreshold"`
}

// rawApp is one entry of apps (the dapr CLI's RunConfig plus appDirPath).
type rawApp struct {
	rawShared         `yaml:",inline"`
	AppID             string   `yaml:"appID"`
	AppDirPath        string   `yaml:"appDirPath"`
	AppChannelAddress string   `yaml:"appChannelAddress"`
	AppPort           int      `yaml:"appPort"`
	HTTPPort          int      `yaml:"daprHTTPPort"`
	GRPCPort          int      `yaml:"daprGRPCPort"`
	InternalGRPCPort  int      `yaml:"daprInternalGRPCPort"`
	MetricsPort       int      `yaml:"metricsPort"`
	Command           []string `yaml:"command"`
}

type rawFile struct {
	Version int       `yaml:"version"`
	Name    string    `yaml:"name"`
	Common  rawShared `yaml:"common"`
	Apps    []rawApp  `yaml:"apps"`
}

// Fields the dapr CLI reads that Mecha accepts without acting on them yet:
// a template written for dapr keeps working, and the user is told.
var (
	noEffectShared = []string{
		"enableProfiling", "placementHostAddress", "schedulerHostAddress", "appSSL",
		"readBufferSize", "daprHTTPReadBufferSize", "runtimePath",
	}
	noEffectApp = []string{
		"profilePort", "unixDomainSocket",
		"containerImage", "containerImagePullPolicy", "createService",
	}
)

var (
	knownTop    = yamlKeys(reflect.TypeFor[rawFile]())
	knownShared = append(yamlKeys(reflect.TypeFor[rawShared]()), noEffectShared...)
	knownApp    = append(append(yamlKeys(reflect.TypeFor[rawApp]()), noEffectShared...), noEffectApp...)
)

// yamlKeys lists the yaml names of t's fields, inlined structs included.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			keys = append(keys, yamlKeys(f.Type)...)
			continue
		}
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// checkKeys reports the keys of mapping node m that are not in known (as
// warnings: the dapr CLI ignores them too) and the ones in noEffect.
func checkKeys(m *yaml.Node, where string, known, noEffect []string) (warnings, ignored []string) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i].Value
		switch {
		case slices.Contains(noEffect, k):
			ignored = append(ignored, k)
		case slices.Contains(known, k):
		default:
			w := fmt.Sprintf("%s: unknown field %q is ignored", where, k)
			if s := suggest(k, known); s != "" {
				w += fmt.Sprintf(" (did you mean %q?)", s)
			}
			warnings = append(warnings, w)
		}
	}
	return warnings, ignored
}

// suggest returns the known key that k misspells by case only.
func suggest(k string, known []string) string {
	for _, c := range known {
		if strings.EqualFold(c, k) {
			return c
		}
	}
	return ""
}

// child returns the value of key in mapping node m (nil if absent).
func child(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}
