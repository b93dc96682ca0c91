package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func TestParseQuantity(t *testing.T) {
	cases := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "4Mi", want: 4 << 20},
		{in: "16Mi", want: 16 << 20},
		{in: "1Gi", want: 1 << 30},
		{in: "512Ki", want: 512 << 10},
		{in: "16MB", want: 16_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "3KB", want: 3000},
		{in: "3K", want: 3000},
		{in: "3k", want: 3000},
		{in: "5M", want: 5_000_000},
		{in: "1G", want: 1_000_000_000},
		{in: "100B", want: 100},
		{in: "1048576", want: 1 << 20},
		{in: "1.5Mi", want: 3 << 19},
		{in: " 8 Mi ", want: 8 << 20},
		{in: "", wantErr: true},
		{in: "Mi", wantErr: true},
		{in: "0", wantErr: true},
		{in: "0Mi", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "-4Mi", wantErr: true},
		{in: "four", wantErr: true},
		{in: "4Ti", wantErr: true},
		{in: "4MiB", wantErr: true},
		{in: "4 mi", wantErr: true},
		{in: "1.5", wantErr: true},
		{in: "NaNMi", wantErr: true},
		{in: "InfMi", wantErr: true},
		{in: "+InfB", wantErr: true},
		{in: "1e30Gi", wantErr: true},
		{in: "0.0001B", wantErr: true},
		{in: "99999999999999999999", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := sidecar.ParseQuantity(c.in)
			if c.wantErr {
				if err == nil {
					t.Fatalf("ParseQuantity(%q) = %d, want an error", c.in, got)
				}
				if !strings.Contains(err.Error(), strconv.Quote(strings.TrimSpace(c.in))) {
					t.Fatalf("error %q does not quote the input", err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseQuantity(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
}

// FuzzParseQuantity: a size that parses is positive, and plain integers read
// back as themselves.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"4Mi", "16MB", "1Gi", "512Ki", "1.5k", "100", "0", "-1Mi", "NaNMi", "1e308Gi", " 7 B "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := sidecar.ParseQuantity(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseQuantity(%q) = %d with error %v, want 0", s, n, err)
			}
			return
		}
		if n <= 0 {
			t.Fatalf("ParseQuantity(%q) = %d without error, want a positive size", s, n)
		}
		if v, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && v != n {
			t.Fatalf("ParseQuantity(%q) = %d, want %d", s, n, v)
		}
		// A size always round-trips through its plain byte count.
		if again, err := sidecar.ParseQuantity(strconv.FormatInt(n, 10)); err != nil || again != n {
			t.Fatalf("ParseQuantity(%d) = %d, %v", n, again, err)
		}
	})
}

// parse registers the sidecar flags on a fresh flag set and parses args.
func parse(t *testing.T, args ...string) (*sidecar.Flags, error) {
	t.Helper()
	f := &sidecar.Flags{}
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	f.AddFlags(fs)
	return f, fs.Parse(args)
}

// jsonLogger returns a logger writing JSON lines to buf.
func jsonLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestFlagsDefaults(t *testing.T) {
	t.Setenv("NAMESPACE", "")
	t.Setenv("DAPR_API_TOKEN", "")
	t.Setenv("APP_API_TOKEN", "")
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	f, err := parse(t, "--app-id", "orders")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	regs := kinds.New()
	o, err := f.Options(jsonLogger(&logs), regs)
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.Options{
		AppID:             "orders",
		AppProtocol:       "http",
		AppChannelAddress: "127.0.0.1",
		AppMaxConcurrency: -1,
		HTTPPort:          3500,
		GRPCPort:          50001,
		ListenAddresses:   []string{"127.0.0.1"},
		RegistryFile:      filepath.Join(home, "nameresolution.db"),
		MaxBodySize:       4 << 20,
		ReadBufferSize:    4 << 10, // daprd's --read-buffer-size
		GracefulShutdown:  5 * time.Second,
		Logger:            o.Logger,
		Registries:        regs,
		// daprd's metrics defaults; the endpoint listens where the API does.
		Metrics: runtime.MetricsOptions{Enabled: true, Port: 9090},
		// daprd's app health defaults, used once --enable-app-health-check.
		AppHealthCheckPath:     "/healthz",
		AppHealthProbeInterval: 5 * time.Second,
		AppHealthProbeTimeout:  500 * time.Millisecond,
		AppHealthThreshold:     3,
	}
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("Options:\ngot  %+v\nwant %+v", o, want)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if logs.Len() != 0 {
		t.Fatalf("default flags logged %q, want nothing", logs.String())
	}
}

func TestFlagsDaprdNames(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, o runtime.Options)
	}{
		{
			name: "ports, app and logging",
			args: []string{"--app-port", "8080", "--app-protocol", "grpc", "--app-channel-address", "10.0.0.2", "--app-max-concurrency", "3",
				"--dapr-http-port", "3600", "--dapr-grpc-port", "50002", "--enable-api-logging", "--dapr-graceful-shutdown-seconds", "9", "--data-dir", "/d"},
			check: func(t *testing.T, o runtime.Options) {
				got := []any{o.AppPort, o.AppProtocol, o.AppChannelAddress, o.AppMaxConcurrency, o.HTTPPort, o.GRPCPort, o.EnableAPILogging, o.GracefulShutdown, o.DataDir}
				want := []any{8080, "grpc", "10.0.0.2", 3, 3600, 50002, true, 9 * time.Second, "/d"}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			},
		},
		{
			name: "internal gRPC port and listen addresses",
			args: []string{"--dapr-internal-grpc-port", "50002", "--dapr-internal-grpc-listen-address", "10.0.0.3, [::1]", "--dapr-listen-addresses", "0.0.0.0"},
			check: func(t *testing.T, o runtime.Options) {
				got := []any{o.InternalGRPCPort, o.InternalListenAddresses, o.ListenAddresses}
				want := []any{50002, []string{"10.0.0.3", "::1"}, []string{"0.0.0.0"}}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			},
		},
		{
			name: "resources-path and components-path alias, repeatable",
			args: []string{"--resources-path", "./a", "--components-path", "./legacy", "--resources-path", "./b"},
			check: func(t *testing.T, o runtime.Options) {
				if want := []string{"./a", "./b", "./legacy"}; !reflect.DeepEqual(o.ResourcesPaths, want) {
					t.Fatalf("ResourcesPaths = %q, want %q", o.ResourcesPaths, want)
				}
			},
		},
		{
			name: "max request size in MB",
			args: []string{"--dapr-http-max-request-size", "16"},
			check: func(t *testing.T, o runtime.Options) {
				if o.MaxBodySize != 16<<20 {
					t.Fatalf("MaxBodySize = %d, want %d", o.MaxBodySize, 16<<20)
				}
			},
		},
		{
			name: "max body size quantity",
			args: []string{"--max-body-size", "512Ki"},
			check: func(t *testing.T, o runtime.Options) {
				if o.MaxBodySize != 512<<10 {
					t.Fatalf("MaxBodySize = %d, want %d", o.MaxBodySize, 512<<10)
				}
			},
		},
		{
			name: "max body size wins over max request size, in any order",
			args: []string{"--max-body-size", "2Mi", "--dapr-http-max-request-size", "64"},
			check: func(t *testing.T, o runtime.Options) {
				if o.MaxBodySize != 2<<20 {
					t.Fatalf("MaxBodySize = %d, want %d", o.MaxBodySize, 2<<20)
				}
			},
		},
		{
			name: "listen addresses with IPv6 brackets and spaces",
			args: []string{"--dapr-listen-addresses", "[::1], 127.0.0.1,,0.0.0.0 "},
			check: func(t *testing.T, o runtime.Options) {
				if want := []string{"::1", "127.0.0.1", "0.0.0.0"}; !reflect.DeepEqual(o.ListenAddresses, want) {
					t.Fatalf("ListenAddresses = %q, want %q", o.ListenAddresses, want)
				}
			},
		},
		{
			name: "app health checks",
			args: []string{"--enable-app-health-check", "--app-health-check-path", "/ready", "--app-health-probe-interval", "2", "--app-health-probe-timeout", "300", "--app-health-threshold", "4"},
			check: func(t *testing.T, o runtime.Options) {
				got := []any{o.AppHealthCheck, o.AppHealthCheckPath, o.AppHealthProbeInterval, o.AppHealthProbeTimeout, o.AppHealthThreshold}
				want := []any{true, "/ready", 2 * time.Second, 300 * time.Millisecond, 4}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %v, want %v", got, want)
				}
			},
		},
		{
			name: "app health check bool spelled daprd's way",
			args: []string{"--enable-app-health-check=true"},
			check: func(t *testing.T, o runtime.Options) {
				if !o.AppHealthCheck || o.AppHealthProbeInterval != 5*time.Second {
					t.Fatalf("AppHealthCheck = %v, interval %v; want true, 5s", o.AppHealthCheck, o.AppHealthProbeInterval)
				}
			},
		},
		{
			name: "flag=value spelling",
			args: []string{"--dapr-http-port=0", "--dapr-grpc-port=0", "--log-level=debug"},
			check: func(t *testing.T, o runtime.Options) {
				if o.HTTPPort != 0 || o.GRPCPort != 0 {
					t.Fatalf("ports = %d, %d; want 0, 0", o.HTTPPort, o.GRPCPort)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parse(t, append([]string{"--app-id", "a"}, c.args...)...)
			if err != nil {
				t.Fatalf("parsing %q: %v", c.args, err)
			}
			var logs bytes.Buffer
			o, err := f.Options(jsonLogger(&logs), kinds.New())
			if err != nil {
				t.Fatalf("Options: %v", err)
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			c.check(t, o)
		})
	}
}

func TestFlagsNamespaceFromEnv(t *testing.T) {
	t.Setenv("NAMESPACE", "prod")
	f, err := parse(t, "--app-id", "a")
	if err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil || o.Namespace != "prod" {
		t.Fatalf("Namespace = %q, %v; want prod from $NAMESPACE", o.Namespace, err)
	}
}

func TestFlagsCompatWarn(t *testing.T) {
	f, err := parse(t, "--app-id", "a",
		"--scheduler-host-address", "localhost:50006",
		"--enable-profiling=true", "--profile-port", "7777",
		"--mode", "standalone",
		"--config", "./config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if _, err := f.Options(jsonLogger(&logs), kinds.New()); err != nil {
		t.Fatal(err)
	}
	warned := map[string]string{}
	var configWarned bool
	for _, l := range logLines(t, &logs) {
		if l["level"] != "WARN" {
			t.Errorf("log %v is not a warning", l)
		}
		if flag, ok := l["flag"].(string); ok {
			warned[flag], _ = l["value"].(string)
		} else if strings.Contains(l["msg"].(string), "--config") {
			configWarned = true
		}
	}
	want := map[string]string{
		"--scheduler-host-address": "localhost:50006",
		"--enable-profiling":       "true",
		"--profile-port":           "7777",
		"--mode":                   "standalone",
	}
	if !reflect.DeepEqual(warned, want) {
		t.Fatalf("warned about %v, want %v\nlogs: %s", warned, want, logs.String())
	}
	if configWarned {
		t.Fatalf("--config is applied now, but a warning says it is not; logs: %s", logs.String())
	}
}

// TestFlagsPlacement checks that --placement-host-address (daprd's
// comma-separated list, quotes tolerated) reaches the runtime, and that
// its absence leaves actors off.
func TestFlagsPlacement(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want []string
	}{
		{"", nil},
		{"localhost:50005", []string{"localhost:50005"}},
		{"a:1, b:2,,c:3", []string{"a:1", "b:2", "c:3"}},
		{`"a:1,b:2"`, []string{"a:1", "b:2"}},
	} {
		args := []string{"--app-id", "a"}
		if c.arg != "" {
			args = append(args, "--placement-host-address", c.arg)
		}
		f, err := parse(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o.PlacementAddresses, c.want) {
			t.Errorf("--placement-host-address %q: PlacementAddresses = %q, want %q", c.arg, o.PlacementAddresses, c.want)
		}
	}
}

func TestFlagsCompatHidden(t *testing.T) {
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	(&sidecar.Flags{}).AddFlags(fs)
	for _, name := range []string{"scheduler-host-address", "control-plane-address", "app-ssl"} {
		fl := fs.Lookup(name)
		if fl == nil || !fl.Hidden {
			t.Errorf("compat flag --%s: %+v, want a hidden flag", name, fl)
		}
	}
	if strings.Contains(fs.FlagUsages(), "scheduler-host-address") {
		t.Errorf("usage lists compat flags:\n%s", fs.FlagUsages())
	}
}

func TestFlagsInvalid(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string // substring
	}{
		{"non-numeric port", []string{"--app-id", "a", "--dapr-http-port", "http"}, `invalid argument "http" for "--dapr-http-port"`},
		{"unknown flag", []string{"--app-id", "a", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"zero max request size", []string{"--app-id", "a", "--dapr-http-max-request-size", "0"}, "--dapr-http-max-request-size 0 must be positive"},
		{"negative max request size", []string{"--app-id", "a", "--dapr-http-max-request-size", "-4"}, "--dapr-http-max-request-size -4 must be positive"},
		{"bad max body size", []string{"--app-id", "a", "--max-body-size", "lots"}, `--max-body-size: "lots" is not a positive size`},
		{"zero max body size", []string{"--app-id", "a", "--max-body-size", "0Mi"}, `--max-body-size: "0Mi"`},
		{"missing app id", nil, "--app-id is required"},
		{"app id with a separator", []string{"--app-id", "a||b"}, `--app-id "a||b" must not contain`},
		{"app id with a space", []string{"--app-id", "my app"}, "must not contain spaces"},
		{"port out of range", []string{"--app-id", "a", "--dapr-grpc-port", "70000"}, "--dapr-grpc-port 70000 is not a valid port"},
		{"negative app port", []string{"--app-id", "a", "--app-port", "-1"}, "--app-port -1 is not a valid port"},
		{"bad app protocol", []string{"--app-id", "a", "--app-protocol", "ftp"}, `--app-protocol "ftp" is not one of`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parse(t, c.args...)
			if err == nil {
				var o runtime.Options
				if o, err = f.Options(slog.New(slog.DiscardHandler), kinds.New()); err == nil {
					err = o.Validate()
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestCommandRejectsBadFlags(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad log level", []string{"--app-id", "a", "--log-level", "loud"}, `--log-level "loud" is not one of debug, info, warn, error`},
		{"no app id", []string{"--dapr-http-port", "0", "--dapr-grpc-port", "0"}, "--app-id is required"},
		{"positional argument", []string{"--app-id", "a", "extra"}, `unknown command "extra"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := sidecar.Command(kinds.New)
			cmd.SetArgs(c.args)
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cmd.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestRunStopsOnContext: Run returns once its context ends, whether that
// happens during or after start-up.
func TestRunStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- sidecar.Run(ctx, runtime.Options{AppID: "a", ResourcesPaths: []string{t.TempDir()}})
	}()
	cancel()
	select {
	case err := <-done:
		// Cancelled before or after Start finished: either the start error
		// or a clean stop, never a hang.
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want nil or context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// TestFlagsAppHealthErrors: values daprd rejects, and values too large for
// a duration, are clear errors; values below 1 fall back to the defaults.
func TestFlagsAppHealthErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"timeout longer than interval", []string{"--app-health-probe-interval", "1", "--app-health-probe-timeout", "1500"}, "--app-health-probe-timeout (1.5s) must not be longer than --app-health-probe-interval (1s)"},
		{"timeout longer than default interval", []string{"--app-health-probe-timeout", "6000"}, "must not be longer than --app-health-probe-interval (5s)"},
		{"interval too large", []string{"--app-health-probe-interval", "99999999999999"}, "--app-health-probe-interval 99999999999999 is too large"},
		{"timeout too large", []string{"--app-health-probe-timeout", "99999999999999999"}, "--app-health-probe-timeout 99999999999999999 is too large"},
		{"not a number", []string{"--app-health-threshold", "three"}, "invalid argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := parse(t, append([]string{"--app-id", "a"}, c.args...)...)
			if err == nil {
				var o runtime.Options
				o, err = f.Options(slog.New(slog.DiscardHandler), kinds.New())
				if err == nil {
					err = o.Validate()
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want one containing %q", err, c.want)
			}
		})
	}

	f, err := parse(t, "--app-id", "a", "--app-health-probe-interval", "0", "--app-health-probe-timeout", "-5", "--app-health-threshold", "0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("values below 1 are daprd's defaults, Validate = %v", err)
	}
}

// TestFlagsAppHealthNotCompat: the health flags act now, so setting them
// logs no "no effect yet" warning.
func TestFlagsAppHealthNotCompat(t *testing.T) {
	f, err := parse(t, "--app-id", "a", "--enable-app-health-check", "--app-health-check-path", "/h", "--app-health-probe-interval", "3", "--app-health-probe-timeout", "100", "--app-health-threshold", "2")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if _, err := f.Options(jsonLogger(&logs), kinds.New()); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Fatalf("health flags logged %s, want nothing", logs.String())
	}
}
