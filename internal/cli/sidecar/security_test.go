package sidecar_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

func securityOptions(t *testing.T, args ...string) runtime.SecurityOptions {
	t.Helper()
	f := &sidecar.Flags{}
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(append([]string{"--app-id", "a"}, args...)); err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil {
		t.Fatal(err)
	}
	return o.Security
}

func write(t *testing.T, file, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecurityFlags: daprd's mTLS flags and variables, Mecha's file flags
// and the home's CA, in that order of precedence.
func TestSecurityFlags(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	for _, v := range []string{"DAPR_TRUST_ANCHORS", "DAPR_SENTRY_TOKEN_FILE", "DAPR_CONTROLPLANE_TRUST_DOMAIN", "DAPR_CONTROLPLANE_NAMESPACE"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	l := selfhosted.LayoutAt(home)

	if o := securityOptions(t); o.EnableMTLS != nil || o.SentryAddress != "" || o.TrustAnchors != nil || o.SentryTokenFile != "" {
		t.Fatalf("no flags, no home CA: %+v", o)
	}
	if o := securityOptions(t, "--enable-mtls"); o.EnableMTLS == nil || !*o.EnableMTLS {
		t.Errorf("--enable-mtls: %v", o.EnableMTLS)
	}
	if o := securityOptions(t, "--enable-mtls=false", "--sentry-address", "ca:1"); o.EnableMTLS == nil || *o.EnableMTLS || o.SentryAddress != "ca:1" {
		t.Errorf("--enable-mtls=false: %+v", o)
	}

	// The home's CA: used when nothing else is given.
	write(t, filepath.Join(l.CADir(), "ca.crt"), "home root")
	write(t, filepath.Join(l.CADir(), "token"), "home token")
	if err := selfhosted.WriteControlPlane(l, selfhosted.ControlPlaneState{Sentry: "127.0.0.1:50003"}); err != nil {
		t.Fatal(err)
	}
	o := securityOptions(t, "--enable-mtls")
	if string(o.TrustAnchors) != "home root" || o.SentryTokenFile != filepath.Join(l.CADir(), "token") || o.SentryAddress != "127.0.0.1:50003" {
		t.Errorf("home defaults: %+v", o)
	}
	if o := securityOptions(t); o.SentryAddress != "" {
		t.Errorf("without --enable-mtls the home's CA address is not used: %+v", o)
	}

	// daprd's variables win over the home.
	t.Setenv("DAPR_TRUST_ANCHORS", "env root")
	t.Setenv("DAPR_SENTRY_TOKEN_FILE", "/env/token")
	t.Setenv("DAPR_CONTROLPLANE_TRUST_DOMAIN", "env.td")
	t.Setenv("DAPR_CONTROLPLANE_NAMESPACE", "envns")
	o = securityOptions(t, "--sentry-address", "ca:2")
	if string(o.TrustAnchors) != "env root" || o.SentryTokenFile != "/env/token" || o.ControlPlaneTrustDomain != "env.td" || o.ControlPlaneNamespace != "envns" || o.SentryAddress != "ca:2" {
		t.Errorf("environment: %+v", o)
	}

	// Flags win over both.
	anchors := filepath.Join(t.TempDir(), "anchors.pem")
	write(t, anchors, "flag root")
	o = securityOptions(t, "--trust-anchors-file", anchors, "--sentry-token-file", "/flag/token", "--control-plane-trust-domain", "flag.td", "--control-plane-namespace", "flagns")
	if string(o.TrustAnchors) != "flag root" || o.SentryTokenFile != "/flag/token" || o.ControlPlaneTrustDomain != "flag.td" || o.ControlPlaneNamespace != "flagns" {
		t.Errorf("flags: %+v", o)
	}

	f := &sidecar.Flags{}
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--app-id", "a", "--trust-anchors-file", "/nonexistent"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Options(slog.New(slog.DiscardHandler), kinds.New()); err == nil {
		t.Error("a missing --trust-anchors-file was accepted")
	}
	if err := fs.Parse([]string{"--enable-mtls=maybe"}); err == nil {
		t.Error("--enable-mtls=maybe was accepted")
	}
}
