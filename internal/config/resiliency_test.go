package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

// fullResiliency uses every field of a Resiliency resource, in the shape
// of Dapr's documentation.
const fullResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
  namespace: dev
scopes: [app1, app2]
spec:
  policies:
    timeouts:
      general: 5s
      important: 60s
      millis: 250
    retries:
      pubsubRetry:
        policy: constant
        duration: 5s
        maxRetries: 10
      retryForever:
        policy: exponential
        maxInterval: 15s
        maxRetries: -1
      retry5xx:
        policy: constant
        duration: 100ms
        maxRetries: 3
        matching:
          httpStatusCodes: "500-599,429"
          gRPCStatusCodes: "1-4, 8-11,13,14"
      defaults: {}
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        interval: 8s
        timeout: 45s
        trip: consecutiveFailures > 8
      plain: {}
  targets:
    apps:
      appB:
        timeout: general
        retry: retryForever
        circuitBreaker: simpleCB
        circuitBreakerCacheSize: 50
    actors:
      myActorType:
        timeout: general
        retry: retry5xx
        circuitBreaker: simpleCB
        circuitBreakerScope: both
        circuitBreakerCacheSize: 5000
    components:
      statestore:
        outbound:
          retry: retryForever
          circuitBreaker: simpleCB
      pubsub:
        inbound:
          timeout: general
          retry: pubsubRetry
`

func TestParseResiliency(t *testing.T) {
	res := config.ParseFile("res.yaml", []byte(fullResiliency), config.LoadOptions{AppID: "app1", Namespace: "dev"})
	checkErrors(t, res.Errors, nil)
	if len(res.Resiliencies) != 1 {
		t.Fatalf("got %d resiliencies, want 1", len(res.Resiliencies))
	}
	r := res.Resiliencies[0]
	if r.Name != "myresiliency" || r.File != "res.yaml" || !reflect.DeepEqual(r.Scopes, []string{"app1", "app2"}) {
		t.Fatalf("resource = %+v", r)
	}
	s := r.Spec
	if want := map[string]time.Duration{"general": 5 * time.Second, "important": time.Minute, "millis": 250 * time.Millisecond}; !reflect.DeepEqual(s.Timeouts, want) {
		t.Errorf("timeouts = %v, want %v", s.Timeouts, want)
	}
	wantRetries := map[string]config.RetrySpec{
		"pubsubRetry":  {Policy: "constant", Duration: 5 * time.Second, MaxInterval: 60 * time.Second, MaxRetries: 10},
		"retryForever": {Policy: "exponential", Duration: 5 * time.Second, MaxInterval: 15 * time.Second, MaxRetries: -1},
		"retry5xx": {Policy: "constant", Duration: 100 * time.Millisecond, MaxInterval: 60 * time.Second, MaxRetries: 3,
			HTTPStatusCodes: []config.CodeRange{{429, 429}, {500, 599}},
			GRPCStatusCodes: []config.CodeRange{{1, 4}, {8, 11}, {13, 13}, {14, 14}}},
		"defaults": {Policy: "constant", Duration: 5 * time.Second, MaxInterval: 60 * time.Second, MaxRetries: -1},
	}
	if !reflect.DeepEqual(s.Retries, wantRetries) {
		t.Errorf("retries = %+v\nwant %+v", s.Retries, wantRetries)
	}
	cb := s.CircuitBreakers["simpleCB"]
	if cb.MaxRequests != 1 || cb.Interval != 8*time.Second || cb.Timeout != 45*time.Second || cb.Trip.String() != "consecutiveFailures > 8" {
		t.Errorf("simpleCB = %+v", cb)
	}
	plain := s.CircuitBreakers["plain"]
	if plain.MaxRequests != 1 || plain.Interval != 0 || plain.Timeout != 60*time.Second || plain.Trip.String() != "consecutiveFailures > 5" {
		t.Errorf("defaults of a breaker = %+v", plain)
	}
	wantTargets := config.ResiliencyTargets{
		Apps: map[string]config.AppTarget{"appB": {PolicyNames: config.PolicyNames{Timeout: "general", Retry: "retryForever", CircuitBreaker: "simpleCB"}, CircuitBreakerCacheSize: 50}},
		Actors: map[string]config.ActorTarget{"myActorType": {
			PolicyNames:         config.PolicyNames{Timeout: "general", Retry: "retry5xx", CircuitBreaker: "simpleCB"},
			CircuitBreakerScope: "both", CircuitBreakerCacheSize: 5000,
		}},
		Components: map[string]config.ComponentTarget{
			"statestore": {Outbound: config.PolicyNames{Retry: "retryForever", CircuitBreaker: "simpleCB"}},
			"pubsub":     {Inbound: config.PolicyNames{Timeout: "general", Retry: "pubsubRetry"}},
		},
	}
	if !reflect.DeepEqual(s.Targets, wantTargets) {
		t.Errorf("targets = %+v\nwant %+v", s.Targets, wantTargets)
	}
}

func TestParseResiliencyScopes(t *testing.T) {
	res := config.ParseFile("res.yaml", []byte(fullResiliency), config.LoadOptions{AppID: "other", Namespace: "dev"})
	if len(res.Resiliencies) != 0 || len(res.Errors) != 0 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "Resiliency/myresiliency (scopes") {
		t.Fatalf("out of scope: resiliencies %d, errors %v, skipped %q", len(res.Resiliencies), res.Errors, res.Skipped)
	}
	res = config.ParseFile("res.yaml", []byte(fullResiliency), config.LoadOptions{AppID: "app1", Namespace: "prod"})
	if len(res.Resiliencies) != 0 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "namespace dev") {
		t.Fatalf("other namespace: skipped %q", res.Skipped)
	}
	twice := fullResiliency + "---\n" + fullResiliency
	res = config.ParseFile("res.yaml", []byte(twice), config.LoadOptions{AppID: "app1"})
	checkErrors(t, res.Errors, []wantErr{{"res.yaml (document 2)", "Resiliency", "myresiliency", `duplicate resiliency name "myresiliency"`}})
}

func TestParseResiliencyErrors(t *testing.T) {
	head := "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\nspec:\n"
	for _, c := range []struct {
		name string
		spec string
		want []string // each must be in the error
	}{
		{"bad duration", "  policies:\n    timeouts:\n      general: 5x\n", []string{`spec.policies.timeouts.general (line 8): "5x" is not a duration`}},
		{"negative duration", "  policies:\n    timeouts:\n      general: -5s\n", []string{"spec.policies.timeouts.general", "negative"}},
		{"maxRetries not a number", "  policies:\n    retries:\n      r:\n        maxRetries: many\n", []string{`spec.policies.retries.r.maxRetries (line 9): "many" is not an integer`}},
		{"maxRetries below -1", "  policies:\n    retries:\n      r:\n        maxRetries: -2\n", []string{"spec.policies.retries.r.maxRetries", "-2 is not -1"}},
		{"unknown policy kind", "  policies:\n    retries:\n      r:\n        policy: linear\n", []string{`spec.policies.retries.r.policy (line 9): "linear" is not constant or exponential`}},
		{"misspelt field", "  policies:\n    retries:\n      r:\n        maxRetry: 3\n", []string{"spec.policies.retries.r.maxRetry (line 9): unknown field"}},
		{"http code out of range", "  policies:\n    retries:\n      r:\n        matching:\n          httpStatusCodes: \"500-700\"\n", []string{`spec.policies.retries.r.matching.httpStatusCodes`, `"500-700" is outside the valid codes 100-599`}},
		{"grpc range backwards", "  policies:\n    retries:\n      r:\n        matching:\n          gRPCStatusCodes: \"9-3\"\n", []string{"gRPCStatusCodes", "ends before it starts"}},
		{"code not a number", "  policies:\n    retries:\n      r:\n        matching:\n          httpStatusCodes: \"5xx\"\n", []string{`"5xx" is not a code`}},
		{"trip does not compile", "  policies:\n    circuitBreakers:\n      cb:\n        trip: consecutiveFailure > 5\n", []string{"spec.policies.circuitBreakers.cb.trip (line 9)", "undeclared reference to 'consecutiveFailure'"}},
		{"trip not boolean", "  policies:\n    circuitBreakers:\n      cb:\n        trip: requests\n", []string{"spec.policies.circuitBreakers.cb.trip", "not bool"}},
		{"maxRequests negative", "  policies:\n    circuitBreakers:\n      cb:\n        maxRequests: -1\n", []string{"spec.policies.circuitBreakers.cb.maxRequests"}},
		{"actor breaker without scope", "  targets:\n    actors:\n      a:\n        circuitBreaker: cb\n", []string{"spec.targets.actors.a.circuitBreakerScope", "needs a scope"}},
		{"actor scope unknown", "  targets:\n    actors:\n      a:\n        circuitBreaker: cb\n        circuitBreakerScope: instance\n", []string{`spec.targets.actors.a.circuitBreakerScope (line 10): "instance" is not id, type or both`}},
		{"component direction misspelt", "  targets:\n    components:\n      s:\n        outbund:\n          retry: r\n", []string{"spec.targets.components.s.outbund (line 9): unknown field"}},
		{"policies not a mapping", "  policies: [a, b]\n", []string{"spec.policies (line 6): must be a mapping"}},
		{"cache size negative", "  targets:\n    apps:\n      a:\n        circuitBreakerCacheSize: -5\n", []string{"spec.targets.apps.a.circuitBreakerCacheSize", "must not be negative"}},
		{"several problems at once", "  policies:\n    timeouts:\n      a: x\n      b: y\n", []string{"timeouts.a", "timeouts.b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := config.ParseFile("/res/bad.yaml", []byte(head+c.spec), config.LoadOptions{AppID: "app"})
			if len(res.Resiliencies) != 0 {
				t.Fatalf("an invalid resource was loaded: %+v", res.Resiliencies)
			}
			if len(res.Errors) != 1 {
				t.Fatalf("errors = %+v, want 1", res.Errors)
			}
			e := res.Errors[0]
			if e.File != "/res/bad.yaml" || e.Kind != "Resiliency" || e.Name != "r" {
				t.Errorf("error %+v does not name the file and resource", e)
			}
			for _, w := range c.want {
				if !strings.Contains(e.Err, w) {
					t.Errorf("error %q does not contain %q", e.Err, w)
				}
			}
		})
	}
	t.Run("header", func(t *testing.T) {
		res := config.ParseFile("f", []byte("apiVersion: dapr.io/v2\nkind: Resiliency\nmetadata:\n  name: r\nspec: {}\n"), config.LoadOptions{})
		checkErrors(t, res.Errors, []wantErr{{"f", "Resiliency", "r", `apiVersion "dapr.io/v2" is not dapr.io/v1alpha1`}})
		res = config.ParseFile("f", []byte("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: r\n"), config.LoadOptions{})
		checkErrors(t, res.Errors, []wantErr{{"f", "Resiliency", "r", "missing spec"}})
		res = config.ParseFile("f", []byte("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nspec: {}\n"), config.LoadOptions{})
		checkErrors(t, res.Errors, []wantErr{{"f", "Resiliency", "", "missing metadata.name"}})
	})
}
