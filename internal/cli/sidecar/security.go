package sidecar

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/security"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// securityFlags are daprd's mTLS flags and Mecha's two file flags.
type securityFlags struct {
	SentryAddress           string
	EnableMTLS              optionalBool
	ControlPlaneTrustDomain string
	ControlPlaneNamespace   string
	TrustAnchorsFile        string
	SentryTokenFile         string
}

// Environment variables daprd reads for its control-plane identity.
const (
	controlPlaneTrustDomainEnv = "DAPR_CONTROLPLANE_TRUST_DOMAIN"
	controlPlaneNamespaceEnv   = "DAPR_CONTROLPLANE_NAMESPACE"
)

func (s *securityFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.SentryAddress, "sentry-address", "", "the control plane's certificate authority (host:port); turns on mTLS between sidecars unless --enable-mtls=false or Configuration spec.mtls.enabled is false")
	fs.Var(&s.EnableMTLS, "enable-mtls", "mutual TLS between sidecars with certificates from --sentry-address (default: on when a CA address is given; without --sentry-address, the local control plane's CA)")
	fs.Lookup("enable-mtls").NoOptDefVal = "true"
	fs.StringVar(&s.ControlPlaneTrustDomain, "control-plane-trust-domain", "", "the control plane's trust domain, in the CA's identity (default $"+controlPlaneTrustDomainEnv+", else Configuration spec.mtls.controlPlaneTrustDomain, else "+security.DefaultControlPlaneTrustDomain+")")
	fs.StringVar(&s.ControlPlaneNamespace, "control-plane-namespace", "", "the control plane's namespace, in the CA's identity (default $"+controlPlaneNamespaceEnv+", else "+security.DefaultControlPlaneNamespace+")")
	fs.StringVar(&s.TrustAnchorsFile, "trust-anchors-file", "", "PEM root certificates to verify the CA with (default $"+security.TrustAnchorsEnv+" as PEM, else the local control plane's <home>/data/ca/ca.crt)")
	fs.StringVar(&s.SentryTokenFile, "sentry-token-file", "", "file holding the token presented to the CA (default $"+security.SentryTokenFileEnv+", else the local control plane's <home>/data/ca/token)")
}

// options resolves the flags, the environment and the Mecha home into the
// runtime's security options: a flag wins over daprd's variable, which
// wins over the files of the home (used only when nothing else is given).
func (s *securityFlags) options() (runtime.SecurityOptions, error) {
	o := runtime.SecurityOptions{
		SentryAddress:           s.SentryAddress,
		EnableMTLS:              s.EnableMTLS.ptr(),
		ControlPlaneTrustDomain: s.ControlPlaneTrustDomain,
		ControlPlaneNamespace:   s.ControlPlaneNamespace,
		SentryTokenFile:         s.SentryTokenFile,
	}
	if o.ControlPlaneTrustDomain == "" {
		o.ControlPlaneTrustDomain = os.Getenv(controlPlaneTrustDomainEnv)
	}
	if o.ControlPlaneNamespace == "" {
		o.ControlPlaneNamespace = os.Getenv(controlPlaneNamespaceEnv)
	}
	if o.SentryTokenFile == "" {
		o.SentryTokenFile = os.Getenv(security.SentryTokenFileEnv)
	}
	switch {
	case s.TrustAnchorsFile != "":
		b, err := os.ReadFile(s.TrustAnchorsFile)
		if err != nil {
			return o, fmt.Errorf("--trust-anchors-file: %w", err)
		}
		o.TrustAnchors = b
	case os.Getenv(security.TrustAnchorsEnv) != "":
		o.TrustAnchors = []byte(os.Getenv(security.TrustAnchorsEnv))
	}
	home, err := selfhosted.Home()
	if err != nil {
		return o, nil // no home: only what was given
	}
	l := selfhosted.LayoutAt(home)
	if o.SentryAddress == "" && o.EnableMTLS != nil && *o.EnableMTLS {
		if st, ok, err := selfhosted.ReadControlPlane(l); err == nil && ok && st.Sentry != "" {
			o.SentryAddress = st.Sentry
		}
	}
	if o.TrustAnchors == nil {
		b, err := os.ReadFile(filepath.Join(l.CADir(), sentry.RootCertFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return o, fmt.Errorf("the local CA's root: %w", err)
		}
		o.TrustAnchors = b
	}
	if o.SentryTokenFile == "" {
		f := filepath.Join(l.CADir(), sentry.TokenFile)
		if _, err := os.Stat(f); err == nil {
			o.SentryTokenFile = f
		}
	}
	return o, nil
}

// optionalBool is a boolean flag that knows whether it was given, so that
// an absent --enable-mtls leaves the decision to the Configuration.
type optionalBool struct {
	set, value bool
}

func (b *optionalBool) String() string {
	if !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.value = true, v
	return nil
}

func (b *optionalBool) Type() string { return "bool" }

// IsBoolFlag lets the flag be given without a value.
func (b *optionalBool) IsBoolFlag() bool { return true }

func (b *optionalBool) ptr() *bool {
	if !b.set {
		return nil
	}
	v := b.value
	return &v
}
