package run

import (
	"reflect"
	"testing"

	"github.com/mecha-dev/mecha/internal/cli/run/runfile"
)

// TestTemplateFlags: a template app becomes the flags `mecha run` would
// get: mecha run's defaults (free ports) unless the template sets a value.
func TestTemplateFlags(t *testing.T) {
	bare := templateFlags(runfile.App{AppID: "a"}, false)
	if bare.HTTPPort != 0 || bare.GRPCPort != 0 || bare.AppProtocol != "http" || bare.AppChannelAddress != "127.0.0.1" ||
		bare.ListenAddresses != "127.0.0.1" || bare.AppMaxConcurrency != -1 || bare.LogLevel != "info" || bare.MaxRequestSizeMB != 4 ||
		bare.GracefulSeconds != 5 || bare.AppHealthCheckPath != "/healthz" || bare.AppHealthProbeInterval != 5 ||
		bare.AppHealthProbeTimeout != 500 || bare.AppHealthThreshold != 3 || bare.ResourcesPaths != nil || bare.Config != nil {
		t.Fatalf("defaults: %+v", *bare)
	}
	f := templateFlags(runfile.App{
		AppID: "b", AppPort: 8080, AppProtocol: "grpc", AppChannelAddress: "10.0.0.1", HTTPPort: 3510, GRPCPort: 50010,
		InternalGRPCPort: 47310, ListenAddresses: "0.0.0.0", AppMaxConcurrency: 3, ResourcesPaths: []string{"/r"},
		ConfigFile: "/c.yaml", LogLevel: "debug", EnableAPILogging: true, MaxBodySize: "16Mi", MaxRequestSizeMB: 8,
		EnableAppHealthCheck: true, AppHealthCheckPath: "/ready", AppHealthProbeInterval: 2, AppHealthProbeTimeout: 100, AppHealthThreshold: 9,
	}, true)
	got := []any{f.AppID, f.AppPort, f.AppProtocol, f.AppChannelAddress, f.HTTPPort, f.GRPCPort, f.InternalGRPCPort, f.ListenAddresses,
		f.AppMaxConcurrency, f.ResourcesPaths, f.Config, f.LogLevel, f.LogAsJSON, f.EnableAPILogging, f.MaxBodySize, f.MaxRequestSizeMB,
		f.EnableAppHealthCheck, f.AppHealthCheckPath, f.AppHealthProbeInterval, f.AppHealthProbeTimeout, f.AppHealthThreshold}
	want := []any{"b", 8080, "grpc", "10.0.0.1", 3510, 50010, 47310, "0.0.0.0",
		3, []string{"/r"}, []string{"/c.yaml"}, "debug", true, true, "16Mi", 8,
		true, "/ready", 2, 100, 9}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flags %v\nwant  %v", got, want)
	}
}
