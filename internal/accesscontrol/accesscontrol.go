// Package accesscontrol enforces Configuration spec.accessControl on the
// receiving sidecar: which calling apps may invoke which operations of
// this app, with daprd's semantics (pkg/acl in Dapr 1.18):
//
//   - The caller is the SPIFFE identity of its mTLS certificate. Without
//     mTLS there is no identity and only the global defaultAction applies:
//     daprd does not trust the dapr-caller-app-id metadata for this, and
//     neither does Mecha, so app policies need mTLS.
//   - A policy applies when its appId, namespace and trustDomain all match
//     the caller; otherwise the global defaultAction decides. The global
//     default is deny when policies are configured without one.
//   - Within a policy, the first operation that matches the method decides
//     (see match.go for the wildcards); for HTTP apps its action for the
//     request's verb, or for "*", else the policy's defaultAction; for gRPC
//     apps (and proxied gRPC calls, named /package.Service/Method) its
//     action. No matching operation: the policy's defaultAction, else the
//     global one.
//   - HTTP operation names are matched case-insensitively, gRPC ones
//     exactly.
//
// Refusals are gRPC PermissionDenied, which the caller's sidecar reports
// as 403 ERR_DIRECT_INVOKE (HTTP) or PermissionDenied (gRPC).
package accesscontrol

import (
	"fmt"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

const (
	allow = "allow"
	deny  = "deny"
)

// List is a parsed spec.accessControl.
type List struct {
	defaultAction string
	trustDomain   string
	http          bool
	policies      map[policyKey]*policy
}

type policyKey struct{ appID, namespace string }

type policy struct {
	defaultAction string
	trustDomain   string
	ops           *trie
}

// operation is one spec.accessControl.policies[].operations entry.
type operation struct {
	name   string
	verbs  map[string]string // HTTP verb (or "*") → action
	action string            // for gRPC apps
}

// New parses spec for an app that speaks HTTP (appIsHTTP) or gRPC; a nil
// List (and nil error) means no access control is configured. Policies
// without app id, trust domain or namespace are errors, as in daprd.
func New(spec *config.AccessControlSpec, appIsHTTP bool) (*List, error) {
	if spec == nil || (spec.TrustDomain == "" && spec.DefaultAction == "" && len(spec.Policies) == 0) {
		return nil, nil
	}
	l := &List{
		defaultAction: strings.ToLower(spec.DefaultAction),
		trustDomain:   spec.TrustDomain,
		http:          appIsHTTP,
		policies:      make(map[policyKey]*policy, len(spec.Policies)),
	}
	if l.trustDomain == "" {
		l.trustDomain = spiffe.DefaultTrustDomain
	}
	if l.defaultAction == "" {
		// daprd: deny when policies are given (or the key is absent
		// altogether), allow for an explicitly empty list.
		if spec.Policies == nil || len(spec.Policies) > 0 {
			l.defaultAction = deny
		} else {
			l.defaultAction = allow
		}
	}
	var bad []string
	for _, p := range spec.Policies {
		if p.AppID == "" || p.TrustDomain == "" || p.Namespace == "" {
			bad = append(bad, p.AppID)
			continue
		}
		pol := &policy{defaultAction: strings.ToLower(p.DefaultAction), trustDomain: p.TrustDomain, ops: &trie{}}
		for _, o := range p.Operations {
			name := o.Name
			if !strings.HasPrefix(name, "/") {
				name = "/" + name
			}
			if appIsHTTP {
				name = strings.ToLower(name)
			}
			op := &operation{name: name, verbs: make(map[string]string, len(o.HTTPVerb)), action: strings.ToLower(o.Action)}
			for _, v := range o.HTTPVerb {
				op.verbs[v] = strings.ToLower(o.Action)
			}
			pol.ops.insert(name, op)
		}
		// The same app id may have policies in several namespaces.
		l.policies[policyKey{p.AppID, p.Namespace}] = pol
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("invalid access control spec: policies for %q lack an app id, trust domain or namespace", bad)
	}
	return l, nil
}

// TrustDomain is this app's trust domain (spec.accessControl.trustDomain,
// default "public").
func (l *List) TrustDomain() string { return l.trustDomain }

// Decision is the outcome of a check.
type Decision struct {
	Allowed bool
	// ByPolicy is true when the caller's app policy decided, false when
	// the global default did.
	ByPolicy bool
}

// Check decides whether caller (nil when the call carries no verified
// identity) may invoke method (the invocation's method, or a proxied
// call's /package.Service/Method) with verb (NONE for gRPC).
func (l *List) Check(caller *spiffe.ID, method string, verb commonv1.HTTPExtension_Verb) Decision {
	if l == nil {
		return Decision{Allowed: true}
	}
	return l.check(caller, method, verb, l.http)
}

// check is Check with the app's protocol given: proxied gRPC calls are
// checked with gRPC rules whatever the app's protocol, as in daprd.
func (l *List) check(caller *spiffe.ID, method string, verb commonv1.HTTPExtension_Verb, http bool) Decision {
	if l == nil {
		return Decision{Allowed: true}
	}
	global := Decision{Allowed: l.defaultAction == allow}
	if caller == nil {
		return global
	}
	pol := l.policies[policyKey{caller.AppID, caller.Namespace}]
	if pol == nil || pol.trustDomain != caller.TrustDomain {
		return global
	}
	action := l.defaultAction
	if pol.defaultAction != "" {
		action = pol.defaultAction
	}
	if !strings.HasPrefix(method, "/") {
		method = "/" + method
	}
	if http {
		method = strings.ToLower(method)
	}
	if op := pol.ops.search(method); op != nil {
		switch {
		case !http:
			action = op.action
		case verb == commonv1.HTTPExtension_NONE:
			// daprd: an HTTP app called without a verb gets the
			// policy's own default, even when that is empty (deny).
			action = pol.defaultAction
		default:
			if a, ok := op.verbs[verb.String()]; ok {
				action = a
			} else if a, ok := op.verbs["*"]; ok {
				action = a
			}
		}
	}
	return Decision{Allowed: action == allow, ByPolicy: true}
}

// DeniedMessage is daprd's message for a refused call.
func DeniedMessage(caller *spiffe.ID, method string, verb commonv1.HTTPExtension_Verb) string {
	id := ""
	if caller != nil {
		id = caller.String()
	}
	return fmt.Sprintf("access control policy has denied access to id: %s operation: %s verb: %s", id, method, verb)
}
