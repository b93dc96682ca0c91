package resiliency

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

func TestBackoff(t *testing.T) {
	now := time.Now()
	t.Run("constant", func(t *testing.T) {
		b := newBackoff(&config.RetrySpec{Policy: config.RetryConstant, Duration: 3 * time.Second, MaxRetries: 2}, now)
		for i := range 2 {
			if d, ok := b.wait(now); !ok || d != 3*time.Second {
				t.Fatalf("wait %d = %v, %v; want 3s", i, d, ok)
			}
		}
		if _, ok := b.wait(now); ok {
			t.Fatal("a third retry was allowed")
		}
	})
	t.Run("exponential", func(t *testing.T) {
		b := newBackoff(&config.RetrySpec{Policy: config.RetryExponential, MaxInterval: 4 * time.Second, MaxRetries: -1}, now)
		// 500ms, 750ms, 1.125s, ... each ±50%, capped at maxInterval.
		want := 500 * time.Millisecond
		for i := range 20 {
			d, ok := b.wait(now)
			if !ok {
				t.Fatalf("retry %d refused", i)
			}
			lo, hi := time.Duration(float64(want)*0.5), min(time.Duration(float64(want)*1.5)+1, 4*time.Second)
			if d < lo || d > hi {
				t.Fatalf("wait %d = %v, want within [%v, %v]", i, d, lo, hi)
			}
			want = min(time.Duration(float64(want)*1.5), 4*time.Second)
		}
		if _, ok := b.wait(now.Add(15 * time.Minute)); ok {
			t.Fatal("exponential retries went on after 15 minutes, which daprd does not")
		}
	})
}

func TestSchedule(t *testing.T) {
	s := (*Provider)(nil).BuiltIn(config.BuiltInServiceRetries)
	if s.Retries() != 3 {
		t.Fatalf("default DaprBuiltInServiceRetries = %d retries, want 3", s.Retries())
	}
	for range 3 {
		if d, ok := s.Next(); !ok || d != time.Second {
			t.Fatalf("Next = %v, %v; want 1s", d, ok)
		}
	}
	if _, ok := s.Next(); ok {
		t.Fatal("a fourth retry was allowed")
	}
}

func resource(name string, spec config.ResiliencySpec) config.Resiliency {
	return config.Resiliency{ObjectMeta: config.ObjectMeta{Name: name}, Spec: spec, File: "/res/" + name + ".yaml"}
}

func newTestProvider(t *testing.T, rec Recorder, res ...config.Resiliency) *Provider {
	t.Helper()
	p := New(Options{Logger: slog.New(slog.DiscardHandler), Recorder: rec, Namespace: "default"})
	if errs := p.Load(res); len(errs) != 0 {
		t.Fatalf("Load: %v", errs)
	}
	return p
}

func TestProviderResolution(t *testing.T) {
	cb := config.CircuitBreakerSpec{MaxRequests: 1, Timeout: time.Minute}
	p := newTestProvider(t, nil, resource("defaults", config.ResiliencySpec{
		Timeouts: map[string]time.Duration{
			"DefaultTimeoutPolicy":                            7 * time.Second,
			"DefaultStatestoreComponentOutboundTimeoutPolicy": 3 * time.Second,
			"DefaultAppTimeoutPolicy":                         9 * time.Second,
			"fast":                                            time.Second,
		},
		Retries: map[string]config.RetrySpec{
			"DefaultComponentInboundRetryPolicy": {Policy: config.RetryConstant, MaxRetries: 2},
			"r":                                  {Policy: config.RetryConstant, MaxRetries: 5},
		},
		CircuitBreakers: map[string]config.CircuitBreakerSpec{"cb": cb},
		Targets: config.ResiliencyTargets{
			Apps:       map[string]config.AppTarget{"orders": {PolicyNames: config.PolicyNames{Timeout: "fast", Retry: "r", CircuitBreaker: "cb"}}},
			Components: map[string]config.ComponentTarget{"cache": {Outbound: config.PolicyNames{Retry: "r"}}},
		},
	}))
	for _, c := range []struct {
		name         string
		pol          *Policy
		timeout      time.Duration
		retries      int // -2: no retry policy
		breaker      bool
		target, flow string
	}{
		{"app entry", p.App("orders", "buy"), time.Second, 5, true, "app_orders", FlowOutbound},
		{"app default", p.App("users", "get"), 9 * time.Second, -2, false, "app_users", FlowOutbound},
		{"state default by kind", p.ComponentOutbound("statestore", Statestore), 3 * time.Second, -2, false, "Statestore_statestore", FlowOutbound},
		{"other kind: global default", p.ComponentOutbound("pubsub", Pubsub), 7 * time.Second, -2, false, "Pubsub_pubsub", FlowOutbound},
		{"inbound default", p.ComponentInbound("pubsub", Pubsub), 7 * time.Second, 2, false, "Pubsub_pubsub", FlowInbound},
		// A target entry names its policies: no defaults are mixed in.
		{"component entry", p.ComponentOutbound("cache", Statestore), 0, 5, false, "Statestore_cache", FlowOutbound},
		{"component entry, other direction", p.ComponentInbound("cache", Statestore), 0, -2, false, "", ""},
		{"actor default", p.ActorPostLock("cart", "1"), 7 * time.Second, -2, false, "actor_cart", FlowOutbound},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.target == "" {
				if c.pol != nil {
					t.Fatalf("policy = %+v, want none", c.pol)
				}
				return
			}
			if c.pol == nil {
				t.Fatal("no policy")
			}
			retries := -2
			if c.pol.retry != nil {
				retries = c.pol.retry.MaxRetries
			}
			if c.pol.Timeout() != c.timeout || retries != c.retries || c.pol.HasBreaker() != c.breaker || c.pol.Target() != c.target || c.pol.labels.Flow != c.flow {
				t.Fatalf("policy = timeout %v, retries %d, breaker %v, target %q, flow %q; want %v, %d, %v, %q, %q",
					c.pol.Timeout(), retries, c.pol.HasBreaker(), c.pol.Target(), c.pol.labels.Flow, c.timeout, c.retries, c.breaker, c.target, c.flow)
			}
			if c.pol.labels.Name != "defaults" || c.pol.labels.Namespace != "default" {
				t.Fatalf("labels = %+v", c.pol.labels)
			}
		})
	}
	if !p.AppDefined("orders") || p.AppDefined("users") {
		t.Error("AppDefined: only orders has a target entry")
	}
	// Breakers are per app method, and the same for repeated lookups.
	if p.App("orders", "buy").cbs[0] != p.App("orders", "buy").cbs[0] || p.App("orders", "buy").cbs[0] == p.App("orders", "sell").cbs[0] {
		t.Error("app breakers are not one per method")
	}
	if (*Provider)(nil).App("orders", "buy") != nil || (*Provider)(nil).ComponentOutbound("x", Statestore) != nil {
		t.Error("a nil provider returned policies")
	}
	if New(Options{}).ComponentOutbound("statestore", Statestore) != nil {
		t.Error("without resources, components have policies")
	}
}

func TestProviderActorScopes(t *testing.T) {
	spec := config.ResiliencySpec{
		Retries:         map[string]config.RetrySpec{"r": {Policy: config.RetryConstant, MaxRetries: 1}},
		CircuitBreakers: map[string]config.CircuitBreakerSpec{"cb": {MaxRequests: 1, Timeout: time.Minute}},
		Timeouts:        map[string]time.Duration{"t": time.Second},
		Targets: config.ResiliencyTargets{Actors: map[string]config.ActorTarget{
			"byType": {PolicyNames: config.PolicyNames{Retry: "r", CircuitBreaker: "cb", Timeout: "t"}, CircuitBreakerScope: "type"},
			"byID":   {PolicyNames: config.PolicyNames{CircuitBreaker: "cb"}, CircuitBreakerScope: "id", CircuitBreakerCacheSize: 2},
			"both":   {PolicyNames: config.PolicyNames{CircuitBreaker: "cb"}, CircuitBreakerScope: "both"},
		}},
	}
	p := newTestProvider(t, nil, resource("actors", spec))
	a1, a2 := p.ActorPreLock("byType", "1"), p.ActorPreLock("byType", "2")
	if len(a1.cbs) != 1 || a1.cbs[0] != a2.cbs[0] || a1.Timeout() != 0 || !a1.HasRetries() {
		t.Fatalf("type scope: %+v", a1)
	}
	if post := p.ActorPostLock("byType", "1"); post.Timeout() != time.Second || post.HasRetries() || post.HasBreaker() {
		t.Fatalf("post-lock policy: %+v", post)
	}
	i1, i2 := p.ActorPreLock("byID", "1"), p.ActorPreLock("byID", "2")
	if len(i1.cbs) != 1 || i1.cbs[0] == i2.cbs[0] || i1.cbs[0] != p.ActorPreLock("byID", "1").cbs[0] {
		t.Fatal("id scope: want one breaker per actor")
	}
	p.ActorPreLock("byID", "3") // the cache keeps 2: "2", the least recently used, goes
	if i2.cbs[0] == p.ActorPreLock("byID", "2").cbs[0] {
		t.Fatal("id scope: circuitBreakerCacheSize is not honoured")
	}
	b1, b2 := p.ActorPreLock("both", "1"), p.ActorPreLock("both", "2")
	if len(b1.cbs) != 2 || b1.cbs[0] != b2.cbs[0] || b1.cbs[1] == b2.cbs[1] {
		t.Fatal("both scope: want the type's breaker and one per actor")
	}
	if p.ActorPreLock("other", "1") != nil || p.ActorPostLock("other", "1") != nil {
		t.Fatal("an actor type without entry or defaults has policies")
	}
}

func TestProviderLoadErrors(t *testing.T) {
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	errs := p.Load([]config.Resiliency{resource("bad", config.ResiliencySpec{
		Retries: map[string]config.RetrySpec{
			config.BuiltInActorNotFoundRetries: {Policy: config.RetryConstant, MaxRetries: 10},
			config.BuiltInServiceRetries:       {Policy: config.RetryConstant, Duration: 10 * time.Millisecond, MaxRetries: 1},
		},
		Targets: config.ResiliencyTargets{Apps: map[string]config.AppTarget{"a": {PolicyNames: config.PolicyNames{Retry: "missing", Timeout: "nope"}}}},
	})})
	var msgs []string
	for _, e := range errs {
		if e.File != "/res/bad.yaml" || e.Kind != "Resiliency" || e.Name != "bad" {
			t.Errorf("error %+v does not name the resource", e)
		}
		msgs = append(msgs, e.Err)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"spec.policies.retries.DaprBuiltInActorNotFoundRetries: the built-in policy",
		`spec.targets.apps.a.retry: no retry policy named "missing"`,
		`spec.targets.apps.a.timeout: no timeout policy named "nope"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors %q lack %q", all, want)
		}
	}
	// The bad references are dropped; the target entry stays (and turns
	// the built-in retries off, as in daprd).
	if p.App("a", "m") != nil || !p.AppDefined("a") {
		t.Error("the target with unknown policies should have no policy")
	}
	// A built-in override keeps at least 3 retries.
	s := p.BuiltIn(config.BuiltInServiceRetries)
	if s.Retries() != 3 {
		t.Errorf("overridden DaprBuiltInServiceRetries has %d retries, want the minimum 3", s.Retries())
	}
	if d, _ := s.Next(); d != 10*time.Millisecond {
		t.Errorf("overridden DaprBuiltInServiceRetries waits %v, want 10ms", d)
	}
}

func TestProviderMetrics(t *testing.T) {
	rec := &fakeRecorder{}
	p := newTestProvider(t, rec, resource("m", config.ResiliencySpec{
		CircuitBreakers: map[string]config.CircuitBreakerSpec{"cb": {MaxRequests: 1, Timeout: time.Minute}},
		Timeouts:        map[string]time.Duration{"t": time.Minute},
		Targets:         config.ResiliencyTargets{Components: map[string]config.ComponentTarget{"store": {Outbound: config.PolicyNames{CircuitBreaker: "cb", Timeout: "t"}}}},
	}))
	if len(rec.loaded) != 1 || rec.loaded[0] != "m/default" {
		t.Fatalf("loaded = %v", rec.loaded)
	}
	pol := p.ComponentOutbound("store", Statestore)
	for range 6 {
		pol.Run(context.Background(), func(context.Context) error { return errors.New("down") })
	}
	if got := rec.count(rec.activated, PolicyCircuitBreaker, string(StateOpen)); got != 1 {
		t.Errorf("open transitions recorded = %d, want 1", got)
	}
	if got := rec.count(rec.executed, PolicyTimeout, ""); got != 6 {
		t.Errorf("timeout executions = %d, want 6", got)
	}
	if got := rec.count(rec.executed, PolicyCircuitBreaker, string(StateClosed)); got != 6 {
		t.Errorf("breaker executions while closed = %d, want 6", got)
	}
	pol.Run(context.Background(), func(context.Context) error { return nil })
	if got := rec.count(rec.executed, PolicyCircuitBreaker, string(StateOpen)); got != 1 {
		t.Errorf("breaker executions while open = %d, want 1", got)
	}
}

func TestLRU(t *testing.T) {
	c := newLRU[int](2)
	c.add("a", 1)
	c.add("b", 2)
	c.get("a") // a is now the most recent
	c.add("c", 3)
	if _, ok := c.get("b"); ok || c.len() != 2 {
		t.Fatal("the least recently used entry was not evicted")
	}
	if v, ok := c.get("a"); !ok || v != 1 {
		t.Fatal("a was evicted")
	}
}
