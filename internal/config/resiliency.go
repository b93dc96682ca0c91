package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mecha-dev/mecha/internal/resiliency/trip"
)

// Resiliency is a Dapr Resiliency resource (kind: Resiliency, apiVersion
// dapr.io/v1alpha1): named timeout, retry and circuit breaker policies, and
// the targets (apps, actor types, components) they apply to. The values are
// parsed and checked here; internal/resiliency turns them into runners.
type Resiliency struct {
	ObjectMeta
	Scopes []string
	Spec   ResiliencySpec
	// File is the path the resource was read from.
	File string
}

// ResiliencySpec is spec.policies and spec.targets.
type ResiliencySpec struct {
	Timeouts        map[string]time.Duration
	Retries         map[string]RetrySpec
	CircuitBreakers map[string]CircuitBreakerSpec
	Targets         ResiliencyTargets
}

// ResiliencyTargets is spec.targets: apps by app id, actors by actor type,
// components by component name.
type ResiliencyTargets struct {
	Apps       map[string]AppTarget
	Actors     map[string]ActorTarget
	Components map[string]ComponentTarget
}

// PolicyNames names the policies of one target; "" means none.
type PolicyNames struct {
	Timeout        string
	Retry          string
	CircuitBreaker string
}

// AppTarget is spec.targets.apps.<appId>: service invocation calls to that
// app. Circuit breakers are kept per called method, at most
// CircuitBreakerCacheSize of them (0: the default, 100).
type AppTarget struct {
	PolicyNames
	CircuitBreakerCacheSize int
}

// ActorTarget is spec.targets.actors.<actorType>. CircuitBreakerScope is
// "type" (one breaker for the type), "id" (one per actor) or "both";
// CircuitBreakerCacheSize bounds the per-actor breakers (0: 5000).
type ActorTarget struct {
	PolicyNames
	CircuitBreakerScope     string
	CircuitBreakerCacheSize int
}

// ComponentTarget is spec.targets.components.<name>: outbound calls (the
// sidecar calling the component: state, publish, output bindings, ...) and
// inbound ones (the sidecar delivering what the component produced to the
// app: pub/sub messages, input binding events).
type ComponentTarget struct {
	Outbound PolicyNames
	Inbound  PolicyNames
}

// Retry back-off kinds.
const (
	RetryConstant    = "constant"
	RetryExponential = "exponential"
)

// Defaults of retry and circuit breaker policies, as daprd's.
const (
	DefaultRetryDuration     = 5 * time.Second
	DefaultRetryMaxInterval  = 60 * time.Second
	DefaultRetryMaxRetries   = -1
	DefaultBreakerTimeout    = 60 * time.Second
	DefaultBreakerMaxRequest = 1
)

// RetrySpec is one spec.policies.retries entry.
type RetrySpec struct {
	// Policy is RetryConstant (default) or RetryExponential.
	Policy string
	// Duration is the constant back-off between attempts (default 5s).
	Duration time.Duration
	// MaxInterval caps the exponential back-off (default 60s).
	MaxInterval time.Duration
	// MaxRetries is how many times a failed call is tried again: -1 (the
	// default) without limit, 0 never.
	MaxRetries int
	// HTTPStatusCodes and GRPCStatusCodes (matching.httpStatusCodes,
	// matching.gRPCStatusCodes) list the status codes of an app's answer
	// that are retried; nil retries every failure status.
	HTTPStatusCodes []CodeRange
	GRPCStatusCodes []CodeRange
}

// CodeRange is an inclusive range of status codes, e.g. 500-599.
type CodeRange struct{ From, To int }

// Contains reports whether code is in the range.
func (r CodeRange) Contains(code int) bool { return r.From <= code && code <= r.To }

// CircuitBreakerSpec is one spec.policies.circuitBreakers entry.
type CircuitBreakerSpec struct {
	// MaxRequests is how many calls a half-open breaker lets through
	// (default 1); that many successes in a row close it.
	MaxRequests uint32
	// Interval is how often a closed breaker clears its counts; 0 never.
	Interval time.Duration
	// Timeout is how long an open breaker stays open before it half-opens
	// (default 60s).
	Timeout time.Duration
	// Trip decides, after each failure of a closed breaker, whether it
	// opens (default consecutiveFailures > 5).
	Trip *trip.Expr
}

// Reserved policy names. A retry policy named BuiltInServiceRetries (and
// the other built-ins) replaces the sidecar's built-in retries; policies
// named Default<Level><Kind>Policy apply to every target of that level
// that has no target entry (DefaultRetryPolicy, DefaultAppTimeoutPolicy,
// DefaultStatestoreComponentOutboundCircuitBreakerPolicy, ...).
const (
	BuiltInServiceRetries        = "DaprBuiltInServiceRetries"
	BuiltInActorRetries          = "DaprBuiltInActorRetries"
	BuiltInActorReminderRetries  = "DaprBuiltInActorReminderRetries"
	BuiltInActorNotFoundRetries  = "DaprBuiltInActorNotFoundRetries"
	BuiltInInitializationRetries = "DaprBuiltInInitializationRetries"
)

// parseResiliency reads one Resiliency document: fail reports a problem
// naming the resource; the result is nil when it was refused. Every
// problem found is reported at once, each naming its field and line.
func parseResiliency(doc *yaml.Node, h header, fail func(format string, args ...any)) *Resiliency {
	if h.APIVersion != "dapr.io/v1alpha1" {
		fail("apiVersion %q is not dapr.io/v1alpha1", h.APIVersion)
		return nil
	}
	if h.Metadata.Name == "" {
		fail("missing metadata.name")
		return nil
	}
	var body struct {
		Spec yaml.Node `yaml:"spec"`
	}
	if err := doc.Decode(&body); err != nil {
		fail("invalid spec: %v", err)
		return nil
	}
	d := &resDecoder{}
	r := &Resiliency{ObjectMeta: h.Metadata, Scopes: h.Scopes}
	if body.Spec.Kind == 0 || isNull(&body.Spec) {
		fail("missing spec")
		return nil
	}
	d.spec(&body.Spec, &r.Spec)
	if err := errors.Join(d.errs...); err != nil {
		fail("%v", err)
		return nil
	}
	return r
}

// addResiliency records a loaded Resiliency unless it is for another
// namespace or app, or its name is taken.
func addResiliency(res *Resources, r *Resiliency, file string, opts LoadOptions, seen map[string]string, fail func(format string, args ...any)) {
	r.File = file
	if r.Namespace != "" && opts.Namespace != "" && r.Namespace != opts.Namespace {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Resiliency/%s (namespace %s, sidecar is in %s)", r.Name, r.Namespace, opts.Namespace))
		return
	}
	if !InScope(r.Scopes, opts.AppID) {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Resiliency/%s (scopes %v do not include %q)", r.Name, r.Scopes, opts.AppID))
		return
	}
	k := "Resiliency/" + r.Name
	if prev, dup := seen[k]; dup {
		fail("duplicate resiliency name %q (first defined in %s)", r.Name, prev)
		return
	}
	seen[k] = file
	res.Resiliencies = append(res.Resiliencies, *r)
}

// resDecoder walks the spec node by node, so that every error names the
// field path and line. Field names match case-insensitively, as daprd's
// JSON decoding does; unknown fields are errors, because a misspelt
// maxRetries would otherwise silently mean "retry forever".
type resDecoder struct{ errs []error }

func (d *resDecoder) errorf(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n != nil && n.Line > 0 {
		d.errs = append(d.errs, fmt.Errorf("%s (line %d): %s", path, n.Line, msg))
		return
	}
	d.errs = append(d.errs, fmt.Errorf("%s: %s", path, msg))
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields returns the entries of mapping n, keyed by the known field names
// (in their canonical spelling); unknown and repeated fields are errors.
// A null node is an empty mapping.
func (d *resDecoder) fields(n *yaml.Node, path string, known ...string) map[string]*yaml.Node {
	n = deref(n)
	out := map[string]*yaml.Node{}
	if n == nil || isNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := ""
		for _, f := range known {
			if strings.EqualFold(f, k.Value) {
				name = f
			}
		}
		if name == "" {
			d.errorf(k, path+"."+k.Value, "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		if _, dup := out[name]; dup {
			d.errorf(k, path+"."+k.Value, "set twice")
			continue
		}
		out[name] = v
	}
	return out
}

// entries returns the entries of a mapping of user-chosen names, in order.
func (d *resDecoder) entries(n *yaml.Node, path string) []struct {
	name string
	val  *yaml.Node
} {
	n = deref(n)
	var out []struct {
		name string
		val  *yaml.Node
	}
	if n == nil || isNull(n) {
		return out
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping of names")
		return out
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if strings.TrimSpace(k.Value) == "" {
			d.errorf(k, path, "empty name")
			continue
		}
		if seen[k.Value] {
			d.errorf(k, path+"."+k.Value, "defined twice")
			continue
		}
		seen[k.Value] = true
		out = append(out, struct {
			name string
			val  *yaml.Node
		}{k.Value, n.Content[i+1]})
	}
	return out
}

// scalar returns n's text; ok is false (and an error recorded) when n is
// not a scalar.
func (d *resDecoder) scalar(n *yaml.Node, path string) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be a single value")
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return strings.TrimSpace(n.Value), true
}

// duration reads a Go duration ("5s", "1m30s") or, as daprd, a bare
// number of milliseconds. Negative durations are errors.
func (d *resDecoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	if s == "" {
		d.errorf(n, path, "empty duration")
		return 0, false
	}
	var v time.Duration
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms > math.MaxInt64/int64(time.Millisecond) {
			d.errorf(n, path, "%s milliseconds is too long", s)
			return 0, false
		}
		v = time.Duration(ms) * time.Millisecond
	} else if v, err = time.ParseDuration(s); err != nil {
		d.errorf(n, path, "%q is not a duration (use e.g. 500ms, 5s, 1m30s)", s)
		return 0, false
	}
	if v < 0 {
		d.errorf(n, path, "%q is negative", s)
		return 0, false
	}
	return v, true
}

func (d *resDecoder) integer(n *yaml.Node, path string) (int, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		d.errorf(n, path, "%q is not an integer", s)
		return 0, false
	}
	return v, true
}

func (d *resDecoder) name(n *yaml.Node, path string) string {
	s, _ := d.scalar(n, path)
	return s
}

func (d *resDecoder) spec(n *yaml.Node, s *ResiliencySpec) {
	// Neither section is required: a resource may only override the
	// built-in retries or set Default* policies, which need no target.
	f := d.fields(n, "spec", "policies", "targets")
	p := d.fields(f["policies"], "spec.policies", "timeouts", "retries", "circuitBreakers")
	s.Timeouts = map[string]time.Duration{}
	for _, e := range d.entries(p["timeouts"], "spec.policies.timeouts") {
		if v, ok := d.duration(e.val, "spec.policies.timeouts."+e.name); ok {
			s.Timeouts[e.name] = v
		}
	}
	s.Retries = map[string]RetrySpec{}
	for _, e := range d.entries(p["retries"], "spec.policies.retries") {
		if r, ok := d.retry(e.val, "spec.policies.retries."+e.name); ok {
			s.Retries[e.name] = r
		}
	}
	s.CircuitBreakers = map[string]CircuitBreakerSpec{}
	for _, e := range d.entries(p["circuitBreakers"], "spec.policies.circuitBreakers") {
		if cb, ok := d.breaker(e.val, "spec.policies.circuitBreakers."+e.name); ok {
			s.CircuitBreakers[e.name] = cb
		}
	}
	t := d.fields(f["targets"], "spec.targets", "apps", "actors", "components")
	s.Targets.Apps = map[string]AppTarget{}
	for _, e := range d.entries(t["apps"], "spec.targets.apps") {
		path := "spec.targets.apps." + e.name
		tf := d.fields(e.val, path, "timeout", "retry", "circuitBreaker", "circuitBreakerCacheSize")
		a := AppTarget{PolicyNames: d.policyNames(tf, path)}
		a.CircuitBreakerCacheSize = d.cacheSize(tf, path)
		s.Targets.Apps[e.name] = a
	}
	s.Targets.Actors = map[string]ActorTarget{}
	for _, e := range d.entries(t["actors"], "spec.targets.actors") {
		path := "spec.targets.actors." + e.name
		tf := d.fields(e.val, path, "timeout", "retry", "circuitBreaker", "circuitBreakerScope", "circuitBreakerCacheSize")
		a := ActorTarget{PolicyNames: d.policyNames(tf, path)}
		a.CircuitBreakerCacheSize = d.cacheSize(tf, path)
		if n, ok := tf["circuitBreakerScope"]; ok {
			a.CircuitBreakerScope = strings.ToLower(d.name(n, path+".circuitBreakerScope"))
			switch a.CircuitBreakerScope {
			case "id", "type", "both":
			default:
				d.errorf(n, path+".circuitBreakerScope", "%q is not id, type or both", n.Value)
			}
		}
		if a.CircuitBreaker != "" && a.CircuitBreakerScope == "" {
			d.errorf(deref(e.val), path+".circuitBreakerScope", "missing: an actor circuit breaker needs a scope (id, type or both)")
		}
		s.Targets.Actors[e.name] = a
	}
	s.Targets.Components = map[string]ComponentTarget{}
	for _, e := range d.entries(t["components"], "spec.targets.components") {
		path := "spec.targets.components." + e.name
		cf := d.fields(e.val, path, "outbound", "inbound")
		var c ComponentTarget
		c.Outbound = d.policyNames(d.fields(cf["outbound"], path+".outbound", "timeout", "retry", "circuitBreaker"), path+".outbound")
		c.Inbound = d.policyNames(d.fields(cf["inbound"], path+".inbound", "timeout", "retry", "circuitBreaker"), path+".inbound")
		s.Targets.Components[e.name] = c
	}
}

func (d *resDecoder) policyNames(f map[string]*yaml.Node, path string) PolicyNames {
	var p PolicyNames
	if n, ok := f["timeout"]; ok {
		p.Timeout = d.name(n, path+".timeout")
	}
	if n, ok := f["retry"]; ok {
		p.Retry = d.name(n, path+".retry")
	}
	if n, ok := f["circuitBreaker"]; ok {
		p.CircuitBreaker = d.name(n, path+".circuitBreaker")
	}
	return p
}

func (d *resDecoder) cacheSize(f map[string]*yaml.Node, path string) int {
	n, ok := f["circuitBreakerCacheSize"]
	if !ok {
		return 0
	}
	v, ok := d.integer(n, path+".circuitBreakerCacheSize")
	if ok && v < 0 {
		d.errorf(n, path+".circuitBreakerCacheSize", "must not be negative")
		return 0
	}
	return v
}

func (d *resDecoder) retry(n *yaml.Node, path string) (RetrySpec, bool) {
	before := len(d.errs)
	r := RetrySpec{Policy: RetryConstant, Duration: DefaultRetryDuration, MaxInterval: DefaultRetryMaxInterval, MaxRetries: DefaultRetryMaxRetries}
	f := d.fields(n, path, "policy", "duration", "maxInterval", "maxRetries", "matching")
	if v, ok := f["policy"]; ok {
		s, _ := d.scalar(v, path+".policy")
		switch strings.ToLower(s) {
		case RetryConstant, RetryExponential:
			r.Policy = strings.ToLower(s)
		default:
			d.errorf(v, path+".policy", "%q is not constant or exponential", s)
		}
	}
	if v, ok := f["duration"]; ok {
		r.Duration, _ = d.duration(v, path+".duration")
	}
	if v, ok := f["maxInterval"]; ok {
		if r.MaxInterval, ok = d.duration(v, path+".maxInterval"); ok && r.MaxInterval == 0 {
			d.errorf(v, path+".maxInterval", "must be more than 0")
		}
	}
	if v, ok := f["maxRetries"]; ok {
		if r.MaxRetries, ok = d.integer(v, path+".maxRetries"); ok && r.MaxRetries < -1 {
			d.errorf(v, path+".maxRetries", "%d is not -1 (no limit), 0 (no retries) or a positive count", r.MaxRetries)
		}
	}
	if v, ok := f["matching"]; ok {
		m := d.fields(v, path+".matching", "httpStatusCodes", "gRPCStatusCodes")
		if c, ok := m["httpStatusCodes"]; ok {
			r.HTTPStatusCodes = d.codes(c, path+".matching.httpStatusCodes", 100, 599)
		}
		if c, ok := m["gRPCStatusCodes"]; ok {
			r.GRPCStatusCodes = d.codes(c, path+".matching.gRPCStatusCodes", 0, 16)
		}
	}
	return r, len(d.errs) == before
}

// codes parses a list of codes and ranges such as "500-599,429". An empty
// list means every code, as daprd.
func (d *resDecoder) codes(n *yaml.Node, path string, lo, hi int) []CodeRange {
	s, ok := d.scalar(n, path)
	if !ok || s == "" {
		return nil
	}
	var out []CodeRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		from, to, isRange := strings.Cut(part, "-")
		a, errA := strconv.Atoi(strings.TrimSpace(from))
		b := a
		var errB error
		if isRange {
			b, errB = strconv.Atoi(strings.TrimSpace(to))
		}
		switch {
		case errA != nil || errB != nil:
			d.errorf(n, path, "%q is not a code or a range of codes like 500-599", part)
		case a < lo || a > hi || b < lo || b > hi:
			d.errorf(n, path, "%q is outside the valid codes %d-%d", part, lo, hi)
		case b < a:
			d.errorf(n, path, "%q: the range ends before it starts", part)
		default:
			out = append(out, CodeRange{a, b})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	return out
}

func (d *resDecoder) breaker(n *yaml.Node, path string) (CircuitBreakerSpec, bool) {
	before := len(d.errs)
	cb := CircuitBreakerSpec{MaxRequests: DefaultBreakerMaxRequest, Timeout: DefaultBreakerTimeout}
	f := d.fields(n, path, "maxRequests", "interval", "timeout", "trip")
	if v, ok := f["maxRequests"]; ok {
		m, ok := d.integer(v, path+".maxRequests")
		switch {
		case !ok:
		case m < 0 || m > math.MaxUint32:
			d.errorf(v, path+".maxRequests", "%d is not a count of requests", m)
		case m > 0: // 0 means the default, 1
			cb.MaxRequests = uint32(m)
		}
	}
	if v, ok := f["interval"]; ok {
		cb.Interval, _ = d.duration(v, path+".interval")
	}
	if v, ok := f["timeout"]; ok {
		if t, ok := d.duration(v, path+".timeout"); ok && t > 0 {
			cb.Timeout = t
		}
	}
	src := trip.Default
	tripNode := deref(n)
	if v, ok := f["trip"]; ok {
		src, _ = d.scalar(v, path+".trip")
		tripNode = v
	}
	if len(d.errs) == before {
		e, err := trip.Compile(src)
		if err != nil {
			d.errorf(tripNode, path+".trip", "%v", err)
		}
		cb.Trip = e
	}
	return cb, len(d.errs) == before
}
