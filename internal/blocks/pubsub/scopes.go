package pubsub

import (
	"slices"
	"strings"
)

// scopes is a component's topic scoping for this app, read from its
// metadata as daprd does (pkg/scopes):
//
//	publishingScopes:   "app1=t1,t2;app2=t3"   topics each app may publish
//	subscriptionScopes: "app1=t1;app2="        topics each app may subscribe to
//	allowedTopics:      "t1,t2"                the only topics that exist
//	protectedTopics:    "t1"                   topics only explicitly scoped apps use
//
// Spaces are ignored; "app=" gives the app no topic at all.
type scopes struct {
	publishing   []string
	subscription []string
	allowed      []string
	protected    []string
}

func parseScopes(appID string, md map[string]string) scopes {
	return scopes{
		publishing:   scopedTopics("publishingScopes", appID, md),
		subscription: scopedTopics("subscriptionScopes", appID, md),
		allowed:      topicList("allowedTopics", md),
		protected:    topicList("protectedTopics", md),
	}
}

// canPublish and canSubscribe apply daprd's IsOperationAllowed.
func (s scopes) canPublish(topic string) bool   { return s.allows(topic, s.publishing) }
func (s scopes) canSubscribe(topic string) bool { return s.allows(topic, s.subscription) }

// allows is daprd's rule: a topic outside allowedTopics (when set) is
// refused; otherwise an app without scopes for the operation may use any
// topic that is not protected, and an app with scopes exactly its scoped
// topics.
func (s scopes) allows(topic string, scoped []string) bool {
	if len(s.allowed) > 0 && !slices.Contains(s.allowed, topic) {
		return false
	}
	protected := slices.Contains(s.protected, topic)
	if !protected && len(scoped) == 0 {
		return true
	}
	return slices.Contains(scoped, topic)
}

// metadataValue looks key up case-insensitively, as daprd does.
func metadataValue(md map[string]string, key string) (string, bool) {
	for k, v := range md {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func scopedTopics(key, appID string, md map[string]string) []string {
	val, ok := metadataValue(md, key)
	if !ok || val == "" {
		return nil
	}
	val = strings.ReplaceAll(val, " ", "")
	var topics []string
	for app := range strings.SplitSeq(val, ";") {
		id, list, ok := strings.Cut(app, "=")
		if !ok || id != appID {
			continue
		}
		for t := range strings.SplitSeq(list, ",") {
			if !slices.Contains(topics, t) {
				topics = append(topics, t)
			}
		}
	}
	return topics
}

func topicList(key string, md map[string]string) []string {
	val, ok := metadataValue(md, key)
	if !ok || val == "" {
		return nil
	}
	var topics []string
	for t := range strings.SplitSeq(strings.ReplaceAll(val, " ", ""), ",") {
		if !slices.Contains(topics, t) {
			topics = append(topics, t)
		}
	}
	return topics
}
