package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Subscription is a declarative pub/sub subscription (kind: Subscription),
// apiVersion dapr.io/v2alpha1 or the older dapr.io/v1alpha1, whose single
// spec.route is read as routes.default (daprd's conversion).
type Subscription struct {
	ObjectMeta
	// APIVersion is the version the resource was written in.
	APIVersion string
	Spec       SubscriptionSpec
	Scopes     []string
	File       string
}

// SubscriptionSpec is the spec of a Subscription, in its v2alpha1 shape.
type SubscriptionSpec struct {
	PubsubName string
	Topic      string
	// Metadata is passed to the broker (e.g. rawPayload); YAML scalars of
	// any type are kept in their spelling.
	Metadata        map[string]string
	Routes          SubscriptionRoutes
	DeadLetterTopic string
	BulkSubscribe   BulkSubscribeSpec
}

// SubscriptionRoutes are the routing rules, evaluated in order, and the
// default path.
type SubscriptionRoutes struct {
	Rules   []SubscriptionRule
	Default string
}

// SubscriptionRule sends the events its CEL expression matches to Path.
type SubscriptionRule struct {
	Match string
	Path  string
}

// BulkSubscribeSpec asks for events in batches.
type BulkSubscribeSpec struct {
	Enabled            bool
	MaxMessagesCount   int32
	MaxAwaitDurationMs int32
}

// subscriptionJSON decodes a Subscription spec the way daprd does (YAML
// converted to JSON, field names matched case-insensitively, so
// pubsubName and pubsubname both work). Metadata values are taken as any
// scalar and kept in their YAML spelling.
type subscriptionJSON struct {
	Pubsubname string         `json:"pubsubname"`
	Topic      string         `json:"topic"`
	Metadata   map[string]any `json:"metadata"`
	Route      string         `json:"route"`
	Routes     *struct {
		Rules []struct {
			Match string `json:"match"`
			Path  string `json:"path"`
		} `json:"rules"`
		Default string `json:"default"`
	} `json:"routes"`
	DeadLetterTopic string `json:"deadLetterTopic"`
	BulkSubscribe   struct {
		Enabled            bool  `json:"enabled"`
		MaxMessagesCount   int32 `json:"maxMessagesCount"`
		MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs"`
	} `json:"bulkSubscribe"`
}

// parseSubscription reads one Subscription document: fail reports a
// problem naming the resource; the result is nil when it was refused.
func parseSubscription(doc *yaml.Node, h header, fail func(format string, args ...any)) *Subscription {
	v2 := h.APIVersion == "dapr.io/v2alpha1"
	if !v2 && h.APIVersion != "dapr.io/v1alpha1" {
		fail("apiVersion %q is not dapr.io/v2alpha1 or dapr.io/v1alpha1", h.APIVersion)
		return nil
	}
	if h.Metadata.Name == "" {
		fail("missing metadata.name")
		return nil
	}
	var body struct {
		Spec any `yaml:"spec"`
	}
	if err := doc.Decode(&body); err != nil {
		fail("invalid spec: %v", err)
		return nil
	}
	if body.Spec == nil {
		fail("missing spec")
		return nil
	}
	raw, err := json.Marshal(body.Spec)
	if err != nil {
		fail("invalid spec: %v", err)
		return nil
	}
	var j subscriptionJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		fail("invalid spec: %v", jsonFieldError(err))
		return nil
	}
	s := &Subscription{ObjectMeta: h.Metadata, APIVersion: h.APIVersion, Scopes: h.Scopes}
	s.Spec = SubscriptionSpec{
		PubsubName: j.Pubsubname, Topic: j.Topic, DeadLetterTopic: j.DeadLetterTopic,
		BulkSubscribe: BulkSubscribeSpec{j.BulkSubscribe.Enabled, j.BulkSubscribe.MaxMessagesCount, j.BulkSubscribe.MaxAwaitDurationMs},
	}
	if len(j.Metadata) > 0 {
		s.Spec.Metadata = make(map[string]string, len(j.Metadata))
		for k, v := range j.Metadata {
			s.Spec.Metadata[k] = scalarString(v)
		}
	}
	if err := s.setRoutes(v2, j); err != nil {
		fail("%v", err)
		return nil
	}
	if err := s.validate(); err != nil {
		fail("%v", err)
		return nil
	}
	return s
}

// setRoutes reads routes (v2alpha1) or route (v1alpha1). Each version
// ignores the other's field in daprd, which would leave the subscription
// without a route and silently drop every event: that is refused here.
func (s *Subscription) setRoutes(v2 bool, j subscriptionJSON) error {
	if !v2 {
		if j.Route == "" {
			if j.Routes != nil {
				return errors.New("spec.routes is a dapr.io/v2alpha1 field: use apiVersion dapr.io/v2alpha1, or spec.route in v1alpha1")
			}
			return errors.New("missing spec.route")
		}
		s.Spec.Routes.Default = j.Route
		return nil
	}
	if j.Routes == nil || (len(j.Routes.Rules) == 0 && j.Routes.Default == "") {
		if j.Route != "" {
			return errors.New("spec.route is a dapr.io/v1alpha1 field: in v2alpha1 use spec.routes.default")
		}
		return errors.New("missing spec.routes: give routes.rules and/or routes.default")
	}
	s.Spec.Routes.Default = j.Routes.Default
	for i, r := range j.Routes.Rules {
		if strings.TrimSpace(r.Path) == "" {
			return fmt.Errorf("spec.routes.rules[%d] has no path", i)
		}
		s.Spec.Routes.Rules = append(s.Spec.Routes.Rules, SubscriptionRule{Match: r.Match, Path: r.Path})
	}
	return nil
}

func (s *Subscription) validate() error {
	var errs []error
	if strings.TrimSpace(s.Spec.PubsubName) == "" {
		errs = append(errs, errors.New("missing spec.pubsubname"))
	}
	if strings.TrimSpace(s.Spec.Topic) == "" {
		errs = append(errs, errors.New("missing spec.topic"))
	}
	if b := s.Spec.BulkSubscribe; b.MaxMessagesCount < 0 || b.MaxAwaitDurationMs < 0 {
		errs = append(errs, errors.New("spec.bulkSubscribe: maxMessagesCount and maxAwaitDurationMs must not be negative"))
	}
	return errors.Join(errs...)
}

// scalarString spells a decoded YAML scalar as text; structures become
// JSON, as component metadata values do.
func scalarString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool, float64, int, int64:
		return fmt.Sprint(t)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonFieldError rewords encoding/json's type errors in the resource's
// terms ("spec.topic must be a string").
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("spec.%s must be %s, not %s", te.Field, kindName(te.Type.Kind().String()), te.Value)
	}
	return err
}

func kindName(k string) string {
	switch {
	case k == "string":
		return "a string"
	case k == "bool":
		return "a boolean"
	case strings.HasPrefix(k, "int"):
		return "an integer"
	case k == "slice":
		return "a list"
	case k == "struct", k == "map", k == "ptr":
		return "a mapping"
	}
	return k
}

// addSubscription records a loaded Subscription unless it is for another
// namespace or app, or its name is taken.
func addSubscription(res *Resources, s *Subscription, file string, opts LoadOptions, seen map[string]string, fail func(format string, args ...any)) {
	s.File = file
	if s.Namespace != "" && opts.Namespace != "" && s.Namespace != opts.Namespace {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Subscription/%s (namespace %s, sidecar is in %s)", s.Name, s.Namespace, opts.Namespace))
		return
	}
	if !InScope(s.Scopes, opts.AppID) {
		res.Skipped = append(res.Skipped, fmt.Sprintf("Subscription/%s (scopes %v do not include %q)", s.Name, s.Scopes, opts.AppID))
		return
	}
	k := "Subscription/" + s.Name
	if prev, dup := seen[k]; dup {
		fail("duplicate subscription name %q (first defined in %s)", s.Name, prev)
		return
	}
	seen[k] = file
	res.Subscriptions = append(res.Subscriptions, *s)
}
