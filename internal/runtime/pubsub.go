package runtime

import (
	"context"
	"log/slog"
	"strings"

	"github.com/mecha-dev/mecha/components"
	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
	"github.com/mecha-dev/mecha/internal/config"
)

// initPubSub creates the pub/sub block; its subscriptions are listed in
// the metadata API and its rejected subscriptions in resourceErrors.
func (r *Runtime) initPubSub() {
	r.pubsub = pubsub.New(pubsub.Options{
		AppID: r.opts.AppID, Namespace: r.opts.Namespace, App: r.app, Resiliency: r.resiliency,
		Logger: r.log.With(slog.String("scope", "mecha.runtime.pubsub")),
		ResourceError: func(kind, name, msg string) {
			r.meta.AddResourceError(metadata.ResourceError{Kind: kind, Name: name, Message: msg})
		},
		OnPublish: r.mx.m.PubsubPublished, OnDeliver: r.mx.m.PubsubDelivered,
	})
	r.meta.SetSubscriptions(func() []metadata.Subscription {
		subs := r.pubsub.Subscriptions()
		out := make([]metadata.Subscription, len(subs))
		for i, s := range subs {
			out[i] = metadata.Subscription{PubsubName: s.PubsubName, Topic: s.Topic, Metadata: s.Metadata, DeadLetterTopic: s.DeadLetterTopic, Type: string(s.Type)}
			for _, rl := range s.Rules {
				out[i].Rules = append(out[i].Rules, metadata.SubscriptionRule{Match: rl.Match, Path: rl.Path})
			}
		}
		return out
	})
}

// addPubSub creates and initialises a pubsub.* component. The consumer
// group defaults to the app id, so that the instances of an app share its
// messages, as daprd does; a consumerID the resource sets wins.
func (r *Runtime) addPubSub(c config.Component, md components.Metadata, deps components.Deps, initFn func(initCloser) error) ([]string, error) {
	if v, _ := md.Get("consumerID"); strings.TrimSpace(v) == "" {
		for k := range md.Properties {
			if strings.EqualFold(k, "consumerID") {
				delete(md.Properties, k)
			}
		}
		md.Properties["consumerID"] = r.opts.AppID
	}
	namespaced := false
	for _, m := range c.Spec.Metadata {
		if strings.Contains(m.Value.String, "{namespace}") {
			namespaced = true
		}
	}
	return addComponent(c, r.opts.Registries.PubSub, deps, initFn, func(b cpubsub.Broker) ([]string, error) {
		return featureNames(b.Features()), r.pubsub.Add(c.Name, b, pubsub.ComponentOptions{Metadata: md, NamespaceScoped: namespaced})
	})
}

// startSubscriptions hands the declarative subscriptions to the block and
// starts delivering; a subscription the block refuses (an invalid routing
// rule) is logged and listed in resourceErrors with its file.
func (r *Runtime) startSubscriptions(ctx context.Context, subs []config.Subscription) {
	for _, s := range subs {
		spec := pubsub.SubscriptionSpec{
			Name: s.Name, PubsubName: s.Spec.PubsubName, Topic: s.Spec.Topic, Metadata: s.Spec.Metadata,
			Default: s.Spec.Routes.Default, DeadLetterTopic: s.Spec.DeadLetterTopic,
			BulkSubscribe: pubsub.BulkSubscribe{
				Enabled: s.Spec.BulkSubscribe.Enabled, MaxMessagesCount: s.Spec.BulkSubscribe.MaxMessagesCount,
				MaxAwaitDurationMs: s.Spec.BulkSubscribe.MaxAwaitDurationMs,
			},
		}
		for _, rl := range s.Spec.Routes.Rules {
			spec.Rules = append(spec.Rules, pubsub.RuleSpec{Match: rl.Match, Path: rl.Path})
		}
		if err := r.pubsub.AddDeclarative(spec); err != nil {
			r.log.Error("subscription rejected", "file", s.File, "subscription", s.Name, "error", err)
			r.meta.AddResourceError(metadata.ResourceError{File: s.File, Kind: "Subscription", Name: s.Name, Message: err.Error()})
			continue
		}
		r.log.Info("subscription loaded", "subscription", s.Name, "pubsub", s.Spec.PubsubName, "topic", s.Spec.Topic, "file", s.File)
	}
	r.pubsub.Start(ctx)
}
