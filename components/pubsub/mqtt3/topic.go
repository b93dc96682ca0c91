package mqtt3

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Topic names and filters are checked here, before they reach the broker,
// because MQTT 3.1.1 has no way to refuse a malformed PUBLISH or SUBSCRIBE
// other than closing the connection (MQTT-3.3.2-2, MQTT-4.7.1-1): one bad
// topic from an app would otherwise cut every subscription of the sidecar.

// maxTopicLen is the longest topic MQTT can encode (a 2-byte length).
const maxTopicLen = 65535

// validTopic checks a topic name to publish to.
func validTopic(topic string) error {
	if err := validString(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("topic %q contains a wildcard ('+' or '#'), which only subscriptions may use", topic)
	}
	if strings.HasPrefix(topic, "$") {
		return fmt.Errorf("topic %q starts with '$', which MQTT reserves for the broker", topic)
	}
	return nil
}

// validFilter checks a topic filter to subscribe to: '#' only as the last
// level, '+' only as a whole level.
func validFilter(filter string) error {
	if err := validString(filter); err != nil {
		return err
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic %q: '#' must be the last level", filter)
		case l != "#" && l != "+" && strings.ContainsAny(l, "+#"):
			return fmt.Errorf("topic %q: a wildcard ('+' or '#') must be a whole level", filter)
		}
	}
	return nil
}

func validString(s string) error {
	switch {
	case s == "":
		return errors.New("topic is empty")
	case len(s) > maxTopicLen:
		return fmt.Errorf("topic is %d bytes long, more than MQTT's %d", len(s), maxTopicLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("topic %q is not valid UTF-8", s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("topic %q contains U+0000", s)
	}
	return nil
}

// wildcard reports whether a filter has wildcards.
func wildcard(filter string) bool { return strings.ContainsAny(filter, "+#") }

// matches reports whether topic matches filter by MQTT's rules: '+' matches
// one level, a final '#' the parent level and any below it, and topics
// starting with '$' match no filter starting with a wildcard
// (MQTT-4.7.2-1).
func matches(filter, topic string) bool {
	if filter == topic {
		return true
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, level := range f {
		if level == "#" {
			return true
		}
		if i >= len(t) || (level != "+" && level != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}
