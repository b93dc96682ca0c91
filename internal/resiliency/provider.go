package resiliency

import (
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

// ComponentKind is a component's building block as daprd's resiliency
// names it: it selects the Default<Kind>Component<Direction>*Policy
// defaults and prefixes the metrics target.
type ComponentKind string

// The component kinds that calls are made to.
const (
	Statestore    ComponentKind = "Statestore"
	Pubsub        ComponentKind = "Pubsub"
	Binding       ComponentKind = "Binding"
	Secretstore   ComponentKind = "Secretstore"
	Configuration ComponentKind = "Configuration"
	Lock          ComponentKind = "Lock"
)

// Default sizes of the per-method and per-actor breaker caches.
const (
	defaultAppCacheSize   = 100
	defaultActorCacheSize = 5000
)

// builtInDefaults are daprd's built-in retries; a Resiliency resource may
// replace them with policies of the same names, but not with fewer than
// three retries. BuiltInActorNotFoundRetries cannot be replaced.
var builtInDefaults = map[string]config.RetrySpec{
	config.BuiltInServiceRetries:       {Policy: config.RetryConstant, Duration: time.Second, MaxRetries: 3},
	config.BuiltInActorRetries:         {Policy: config.RetryConstant, Duration: time.Second, MaxRetries: 3},
	config.BuiltInActorNotFoundRetries: {Policy: config.RetryConstant, Duration: time.Second, MaxRetries: 5},
	config.BuiltInActorReminderRetries: {Policy: config.RetryExponential, MaxInterval: 60 * time.Second, MaxRetries: -1},
	config.BuiltInInitializationRetries: {
		Policy: config.RetryExponential, MaxInterval: time.Second, MaxRetries: 3,
	},
}

// Options configure a Provider.
type Options struct {
	Logger *slog.Logger
	// Recorder receives the resiliency metrics; nil records nothing.
	Recorder Recorder
	// Namespace is the sidecar's namespace, the metrics namespace of
	// policies whose resource names none.
	Namespace string
}

// Provider hands out the policy of each call target, from the built-in
// defaults and the Resiliency resources loaded. It is safe for concurrent
// use; Load swaps the whole set at once (circuit breakers start closed
// again). A nil *Provider applies no policies.
type Provider struct {
	log *slog.Logger
	rec Recorder
	ns  string
	now func() time.Time
	t   atomic.Pointer[table]
}

// New returns a provider with only the built-in policies.
func New(o Options) *Provider {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{log: o.Logger, rec: o.Recorder, ns: o.Namespace, now: time.Now}
	p.t.Store(p.build(nil, nil))
	return p
}

// named is a policy or target with the resource that defined it.
type named[T any] struct {
	v   T
	res *config.Resiliency
}

// table is one loaded set of policies and targets, with the circuit
// breakers created for it.
type table struct {
	timeouts   map[string]named[time.Duration]
	retries    map[string]named[*config.RetrySpec]
	breakers   map[string]named[config.CircuitBreakerSpec]
	apps       map[string]named[config.AppTarget]
	actors     map[string]named[config.ActorTarget]
	components map[string]named[config.ComponentTarget]
	// appDefaults and actorDefaults are the Default*Policy names of apps
	// and actor types without a target entry.
	appDefaults, actorDefaults       config.PolicyNames
	appDefaultsRes, actorDefaultsRes *config.Resiliency

	// Component policies, by direction, kind and name (the names are the
	// loaded components': a bounded set); nil values cache "no policy".
	compMu sync.RWMutex
	comps  map[compKey]*Policy

	// Apps and actor types are named by callers, so their policies are
	// kept in bounded caches.
	mu         sync.Mutex
	appCache   *lru[*appPolicies]
	actorCache *lru[*actorPolicies]
}

type compKey struct {
	inbound bool
	kind    ComponentKind
	name    string
}

// appPolicies are an app's policy and, with a breaker, its per-method
// policies.
type appPolicies struct {
	base    *Policy
	methods *lru[*Policy]
}

// actorPolicies are an actor type's policies and per-id breakers.
type actorPolicies struct {
	pre, post *Policy
	cbName    string
	ids       *lru[*breaker]
}

// maxCachedTargets bounds the apps and actor types whose policies (and
// circuit breakers) are kept.
const maxCachedTargets = 1000

// Load replaces the loaded policies with those of res (in order: a later
// resource's policy or target replaces an earlier one of the same name),
// on top of the built-in ones. It returns an error for each target that
// names a policy no resource defines (that reference is ignored) and for
// each attempt to replace a protected built-in policy.
func (p *Provider) Load(res []config.Resiliency) []config.ResourceError {
	if p == nil {
		return nil
	}
	var errs []config.ResourceError
	t := p.build(res, &errs)
	p.t.Store(t)
	for i := range res {
		r := &res[i]
		p.log.Info("resiliency loaded", "resiliency", r.Name, "file", r.File,
			"timeouts", len(r.Spec.Timeouts), "retries", len(r.Spec.Retries), "circuitBreakers", len(r.Spec.CircuitBreakers),
			"apps", len(r.Spec.Targets.Apps), "actors", len(r.Spec.Targets.Actors), "components", len(r.Spec.Targets.Components))
		if p.rec != nil {
			p.rec.PolicyLoaded(r.Name, p.namespace(r))
		}
	}
	return errs
}

func (p *Provider) build(res []config.Resiliency, errs *[]config.ResourceError) *table {
	t := &table{
		timeouts:   map[string]named[time.Duration]{},
		retries:    map[string]named[*config.RetrySpec]{},
		breakers:   map[string]named[config.CircuitBreakerSpec]{},
		apps:       map[string]named[config.AppTarget]{},
		actors:     map[string]named[config.ActorTarget]{},
		components: map[string]named[config.ComponentTarget]{},
		comps:      map[compKey]*Policy{},
		appCache:   newLRU[*appPolicies](maxCachedTargets),
		actorCache: newLRU[*actorPolicies](maxCachedTargets),
	}
	for name, r := range builtInDefaults {
		t.retries[name] = named[*config.RetrySpec]{v: &r}
	}
	fail := func(r *config.Resiliency, field, format string, args ...any) {
		*errs = append(*errs, config.ResourceError{File: r.File, Kind: "Resiliency", Name: r.Name, Err: field + ": " + fmt.Sprintf(format, args...)})
	}
	for i := range res {
		r := &res[i]
		for _, name := range sortedKeys(r.Spec.Timeouts) {
			t.timeouts[name] = named[time.Duration]{r.Spec.Timeouts[name], r}
		}
		for _, name := range sortedKeys(r.Spec.Retries) {
			spec := r.Spec.Retries[name]
			if _, builtIn := builtInDefaults[name]; builtIn {
				if name == config.BuiltInActorNotFoundRetries {
					fail(r, "spec.policies.retries."+name, "the built-in policy %s cannot be replaced; it is ignored", name)
					continue
				}
				if spec.MaxRetries >= 0 && spec.MaxRetries < 3 {
					p.log.Warn("a built-in retry policy cannot retry fewer than 3 times; using 3", "policy", name, "resiliency", r.Name, "maxRetries", spec.MaxRetries)
					spec.MaxRetries = 3
				}
			}
			t.retries[name] = named[*config.RetrySpec]{&spec, r}
		}
		for _, name := range sortedKeys(r.Spec.CircuitBreakers) {
			t.breakers[name] = named[config.CircuitBreakerSpec]{r.Spec.CircuitBreakers[name], r}
		}
	}
	// Targets are checked against every resource's policies, so a
	// resource may use policies another one defines.
	check := func(r *config.Resiliency, path string, n *config.PolicyNames) {
		if n.Timeout != "" {
			if _, ok := t.timeouts[n.Timeout]; !ok {
				fail(r, path+".timeout", "no timeout policy named %q (spec.policies.timeouts); the target has no timeout", n.Timeout)
				n.Timeout = ""
			}
		}
		if n.Retry != "" {
			if _, ok := t.retries[n.Retry]; !ok {
				fail(r, path+".retry", "no retry policy named %q (spec.policies.retries); the target is not retried", n.Retry)
				n.Retry = ""
			}
		}
		if n.CircuitBreaker != "" {
			if _, ok := t.breakers[n.CircuitBreaker]; !ok {
				fail(r, path+".circuitBreaker", "no circuit breaker named %q (spec.policies.circuitBreakers); the target has no breaker", n.CircuitBreaker)
				n.CircuitBreaker = ""
			}
		}
	}
	for i := range res {
		r := &res[i]
		for _, id := range sortedKeys(r.Spec.Targets.Apps) {
			a := r.Spec.Targets.Apps[id]
			check(r, "spec.targets.apps."+id, &a.PolicyNames)
			t.apps[id] = named[config.AppTarget]{a, r}
		}
		for _, typ := range sortedKeys(r.Spec.Targets.Actors) {
			a := r.Spec.Targets.Actors[typ]
			check(r, "spec.targets.actors."+typ, &a.PolicyNames)
			t.actors[typ] = named[config.ActorTarget]{a, r}
		}
		for _, name := range sortedKeys(r.Spec.Targets.Components) {
			c := r.Spec.Targets.Components[name]
			check(r, "spec.targets.components."+name+".outbound", &c.Outbound)
			check(r, "spec.targets.components."+name+".inbound", &c.Inbound)
			t.components[name] = named[config.ComponentTarget]{c, r}
		}
	}
	t.appDefaults, t.appDefaultsRes = t.defaults("App")
	t.actorDefaults, t.actorDefaultsRes = t.defaults("Actor")
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (p *Provider) namespace(r *config.Resiliency) string {
	if r != nil && r.Namespace != "" {
		return r.Namespace
	}
	return p.ns
}

// defaults resolves the Default*Policy names for a target without an
// entry: for each policy kind the first of Default<level><Kind>Policy
// over levels, then Default<Kind>Policy. res is the resource of the first
// policy found.
func (t *table) defaults(levels ...string) (n config.PolicyNames, res *config.Resiliency) {
	pick := func(kind string, has func(string) (*config.Resiliency, bool)) string {
		for _, l := range append(levels, "") {
			name := "Default" + l + kind + "Policy"
			if r, ok := has(name); ok {
				if res == nil {
					res = r
				}
				return name
			}
		}
		return ""
	}
	n.Timeout = pick("Timeout", func(s string) (*config.Resiliency, bool) { v, ok := t.timeouts[s]; return v.res, ok })
	n.Retry = pick("Retry", func(s string) (*config.Resiliency, bool) { v, ok := t.retries[s]; return v.res, ok })
	n.CircuitBreaker = pick("CircuitBreaker", func(s string) (*config.Resiliency, bool) { v, ok := t.breakers[s]; return v.res, ok })
	return n, res
}

// newPolicy builds the policy named by n, without breakers; nil when n
// names nothing.
func (p *Provider) newPolicy(t *table, n config.PolicyNames, res *config.Resiliency, flow, target string) *Policy {
	if n.Timeout == "" && n.Retry == "" && n.CircuitBreaker == "" {
		return nil
	}
	pol := &Policy{
		labels: Labels{Namespace: p.namespace(res), Flow: flow, Target: target},
		rec:    p.rec, log: p.log, now: p.now,
	}
	if res != nil {
		pol.labels.Name = res.Name
	}
	if n.Timeout != "" {
		pol.timeout = t.timeouts[n.Timeout].v
	}
	if n.Retry != "" {
		pol.retry = t.retries[n.Retry].v
	}
	return pol
}

// newBreaker creates a breaker instance of policy cbName for pol's target.
func (p *Provider) newBreaker(t *table, cbName, instance string, pol *Policy) *breaker {
	labels := pol.labels
	name := cbName + "-" + instance
	return newBreaker(name, t.breakers[cbName].v, p.now, func(from, to BreakerState) {
		p.log.Info("circuit breaker changed state", "breaker", name, "from", string(from), "to", string(to))
		if p.rec != nil {
			l := labels
			l.Policy, l.Status = PolicyCircuitBreaker, string(to)
			p.rec.PolicyActivated(l)
		}
	})
}

// ComponentOutbound is the policy of calls from the sidecar to component
// name of kind (state operations, publishing, output bindings, secrets,
// configuration and lock calls); nil when none applies.
func (p *Provider) ComponentOutbound(name string, kind ComponentKind) *Policy {
	return p.component(name, kind, false)
}

// ComponentInbound is the policy of deliveries of what component name
// produced to the app (pub/sub messages, input binding events); nil when
// none applies.
func (p *Provider) ComponentInbound(name string, kind ComponentKind) *Policy {
	return p.component(name, kind, true)
}

func (p *Provider) component(name string, kind ComponentKind, inbound bool) *Policy {
	if p == nil {
		return nil
	}
	t := p.t.Load()
	k := compKey{inbound: inbound, kind: kind, name: name}
	t.compMu.RLock()
	pol, ok := t.comps[k]
	t.compMu.RUnlock()
	if ok {
		return pol
	}
	direction, flow := "Outbound", FlowOutbound
	if inbound {
		direction, flow = "Inbound", FlowInbound
	}
	var n config.PolicyNames
	var res *config.Resiliency
	if c, ok := t.components[name]; ok {
		n, res = c.v.Outbound, c.res
		if inbound {
			n = c.v.Inbound
		}
	} else {
		n, res = t.defaults(string(kind)+"Component"+direction, "Component"+direction, "Component")
	}
	t.compMu.Lock()
	defer t.compMu.Unlock()
	if pol, ok := t.comps[k]; ok {
		return pol
	}
	pol = p.newPolicy(t, n, res, flow, string(kind)+"_"+name)
	if pol != nil && n.CircuitBreaker != "" {
		pol.cbs = []*breaker{p.newBreaker(t, n.CircuitBreaker, name+"-"+direction, pol)}
	}
	t.comps[k] = pol
	return pol
}

// AppDefined reports whether a Resiliency resource has a target entry for
// app id. daprd then leaves out its built-in service invocation retries:
// the target's own policy decides.
func (p *Provider) AppDefined(appID string) bool {
	if p == nil {
		return false
	}
	_, ok := p.t.Load().apps[appID]
	return ok
}

// App is the policy of service invocation calls to method of app appID
// (outbound, at the caller); nil when none applies. Circuit breakers are
// per method, as in daprd, the most recently used circuitBreakerCacheSize
// of them kept per app.
func (p *Provider) App(appID, method string) *Policy {
	if p == nil {
		return nil
	}
	t := p.t.Load()
	n, res, size := t.appDefaults, t.appDefaultsRes, defaultAppCacheSize
	if a, ok := t.apps[appID]; ok {
		n, res = a.v.PolicyNames, a.res
		if a.v.CircuitBreakerCacheSize > 0 {
			size = a.v.CircuitBreakerCacheSize
		}
	}
	if n == (config.PolicyNames{}) {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	ap, ok := t.appCache.get(appID)
	if !ok {
		ap = &appPolicies{base: p.newPolicy(t, n, res, FlowOutbound, "app_"+appID)}
		if n.CircuitBreaker != "" {
			ap.methods = newLRU[*Policy](size)
		}
		t.appCache.add(appID, ap)
	}
	if ap.methods == nil {
		return ap.base
	}
	pol, ok := ap.methods.get(method)
	if !ok {
		c := *ap.base
		c.cbs = []*breaker{p.newBreaker(t, n.CircuitBreaker, appID+":"+method, ap.base)}
		pol = &c
		ap.methods.add(method, pol)
	}
	return pol
}

// ActorPreLock is the policy of a call to actor id of actorType before the
// actor's turn is taken: its retry policy and circuit breaker(s) (scope
// "type": one breaker for the type; "id": one per actor; "both": a call
// must pass both). The timeout is ActorPostLock's. nil when none applies.
func (p *Provider) ActorPreLock(actorType, id string) *Policy {
	ap, t := p.actor(actorType)
	if ap == nil || ap.ids == nil {
		if ap == nil {
			return nil
		}
		return ap.pre
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := ap.ids.get(id)
	if !ok {
		b = p.newBreaker(t, ap.cbName, actorType+"-"+id, ap.pre)
		ap.ids.add(id, b)
	}
	pol := *ap.pre
	pol.cbs = append(append(make([]*breaker, 0, 2), ap.pre.cbs...), b)
	return &pol
}

// ActorPostLock is the policy of a call to an actor once its turn is
// taken: the target's timeout. nil when none applies.
func (p *Provider) ActorPostLock(actorType, id string) *Policy {
	ap, _ := p.actor(actorType)
	if ap == nil {
		return nil
	}
	return ap.post
}

// actor returns the cached policies of actorType; nil when none applies.
func (p *Provider) actor(actorType string) (*actorPolicies, *table) {
	if p == nil {
		return nil, nil
	}
	t := p.t.Load()
	n, res, scope, size := t.actorDefaults, t.actorDefaultsRes, "type", defaultActorCacheSize
	if a, ok := t.actors[actorType]; ok {
		n, res, scope = a.v.PolicyNames, a.res, a.v.CircuitBreakerScope
		if a.v.CircuitBreakerCacheSize > 0 {
			size = a.v.CircuitBreakerCacheSize
		}
	}
	if n == (config.PolicyNames{}) {
		return nil, t
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ap, ok := t.actorCache.get(actorType); ok {
		return ap, t
	}
	target := "actor_" + actorType
	ap := &actorPolicies{
		pre:    p.newPolicy(t, config.PolicyNames{Retry: n.Retry, CircuitBreaker: n.CircuitBreaker}, res, FlowOutbound, target),
		post:   p.newPolicy(t, config.PolicyNames{Timeout: n.Timeout}, res, FlowOutbound, target),
		cbName: n.CircuitBreaker,
	}
	if n.CircuitBreaker != "" {
		if scope == "type" || scope == "both" {
			ap.pre.cbs = []*breaker{p.newBreaker(t, n.CircuitBreaker, actorType, ap.pre)}
		}
		if scope == "id" || scope == "both" {
			ap.ids = newLRU[*breaker](size)
		}
	}
	t.actorCache.add(actorType, ap)
	return ap, t
}

// Schedule is the retry schedule of one call under a built-in retry
// policy, for callers that run their own retry loop (service invocation
// moves to another instance between attempts).
type Schedule struct {
	b   backoff
	now func() time.Time
}

// Next returns the wait before the next retry, or false when no retry is
// left.
func (s *Schedule) Next() (time.Duration, bool) { return s.b.wait(s.now()) }

// Retries is how many retries the schedule allows in all
// (math.MaxInt: no limit).
func (s *Schedule) Retries() int {
	if s.b.spec.MaxRetries < 0 {
		return math.MaxInt
	}
	return s.b.spec.MaxRetries
}

// BuiltIn returns a new schedule of the built-in retry policy name
// (config.BuiltInServiceRetries, ...), as a Resiliency resource may have
// replaced it. A nil provider gives daprd's defaults.
func (p *Provider) BuiltIn(name string) *Schedule {
	now := time.Now
	var spec *config.RetrySpec
	if p != nil {
		now = p.now
		spec = p.t.Load().retries[name].v
	}
	if spec == nil {
		d, ok := builtInDefaults[name]
		if !ok {
			d = config.RetrySpec{Policy: config.RetryConstant, MaxRetries: 0}
		}
		spec = &d
	}
	return &Schedule{b: newBackoff(spec, now()), now: now}
}
