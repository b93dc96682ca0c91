package config

import (
	"fmt"
	"strings"
	"time"
)

// MTLSSpec is spec.mtls: whether sidecar-to-sidecar calls use mutual TLS
// with certificates from the control plane's CA. Enabled is a pointer so
// that an absent key can default to on when the sidecar is given a CA
// address (--sentry-address).
type MTLSSpec struct {
	Enabled *bool `yaml:"enabled"`
	// SentryAddress is the CA's address when --sentry-address is not given.
	SentryAddress string `yaml:"sentryAddress"`
	// ControlPlaneTrustDomain is the CA's trust domain when
	// --control-plane-trust-domain is not given.
	ControlPlaneTrustDomain string `yaml:"controlPlaneTrustDomain"`
	// WorkloadCertTTL and AllowedClockSkew are read by the control plane
	// (Dapr's daprsystem Configuration); sidecars accept and ignore them.
	WorkloadCertTTL  string `yaml:"workloadCertTTL"`
	AllowedClockSkew string `yaml:"allowedClockSkew"`
}

// AccessControlSpec is spec.accessControl: which apps may call which
// operations of this app through service invocation, enforced by this
// (the receiving) sidecar. See internal/accesscontrol.
type AccessControlSpec struct {
	// DefaultAction is allow or deny, for callers no policy matches.
	DefaultAction string `yaml:"defaultAction"`
	// TrustDomain is this app's trust domain (default "public"): the
	// trust domain of its certificate.
	TrustDomain string `yaml:"trustDomain"`
	// Policies is nil when the key is absent, which daprd tells apart
	// from an empty list (see accesscontrol.New).
	Policies []AppPolicySpec `yaml:"policies"`
}

// AppPolicySpec is the policy for one calling app.
type AppPolicySpec struct {
	AppID         string         `yaml:"appId"`
	DefaultAction string         `yaml:"defaultAction"`
	TrustDomain   string         `yaml:"trustDomain"`
	Namespace     string         `yaml:"namespace"`
	Operations    []AppOperation `yaml:"operations"`
}

// AppOperation is an allow/deny rule for operations matching Name (a path
// with * and ** wildcards) and, for HTTP apps, the listed verbs.
type AppOperation struct {
	Name     string   `yaml:"name"`
	HTTPVerb []string `yaml:"httpVerb"`
	Action   string   `yaml:"action"`
}

func validAction(a string) bool {
	switch strings.ToLower(a) {
	case "", "allow", "deny":
		return true
	}
	return false
}

// validate rejects what daprd refuses at start-up: a policy without an
// app id, trust domain or namespace; and actions that are neither allow
// nor deny (daprd treats those as deny; a typo here should not lock an app
// out silently).
func (a *AccessControlSpec) validate() error {
	if a == nil {
		return nil
	}
	if !validAction(a.DefaultAction) {
		return fmt.Errorf("spec.accessControl.defaultAction %q is not allow or deny", a.DefaultAction)
	}
	var missing []string
	for i, p := range a.Policies {
		if p.AppID == "" {
			missing = append(missing, fmt.Sprintf("policies[%d] has no appId", i))
		}
		if p.TrustDomain == "" {
			missing = append(missing, fmt.Sprintf("policies[%d] (%s) has no trustDomain", i, p.AppID))
		}
		if p.Namespace == "" {
			missing = append(missing, fmt.Sprintf("policies[%d] (%s) has no namespace", i, p.AppID))
		}
		if !validAction(p.DefaultAction) {
			return fmt.Errorf("spec.accessControl.policies[%d].defaultAction %q is not allow or deny", i, p.DefaultAction)
		}
		for j, op := range p.Operations {
			if op.Name == "" {
				return fmt.Errorf("spec.accessControl.policies[%d].operations[%d] has no name", i, j)
			}
			if !validAction(op.Action) || op.Action == "" {
				return fmt.Errorf("spec.accessControl.policies[%d].operations[%d].action %q is not allow or deny", i, j, op.Action)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("invalid spec.accessControl: %s", strings.Join(missing, "; "))
	}
	return nil
}

func (m *MTLSSpec) validate() error {
	if m == nil {
		return nil
	}
	for name, v := range map[string]string{"workloadCertTTL": m.WorkloadCertTTL, "allowedClockSkew": m.AllowedClockSkew} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			return fmt.Errorf("spec.mtls.%s %q is not a duration", name, v)
		}
	}
	return nil
}
