package jetstream

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// maxNameLen bounds the stream and consumer names the broker derives:
// servers store each as a directory name, and long ones are unwieldy in
// `nats stream ls`.
const maxNameLen = 64

// validName reports whether s may be a stream or consumer name: printable,
// without whitespace, '.', '*', '>', '/' or '\'.
func validName(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(".*>/\\", r) {
			return false
		}
	}
	return true
}

// nameFor turns s (a topic or a consumer group) into a stream or consumer
// name: s itself when it is a valid name of at most maxNameLen bytes;
// otherwise its letters, digits, '-' and '_' with the rest replaced by '_',
// cut short, plus a hash of s, so that two topics never share a name.
func nameFor(s string) string {
	if validName(s) && len(s) <= maxNameLen {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= maxNameLen-9 {
			break
		}
	}
	sum := sha256.Sum256([]byte(s))
	return b.String() + "_" + hex.EncodeToString(sum[:4])
}

// checkTopic reports whether topic can be published to as a NATS subject:
// not empty, no whitespace, no empty tokens, and (for publishing) no
// wildcards.
func checkTopic(topic string) error {
	if topic == "" {
		return errors.New("topic is empty")
	}
	if strings.IndexFunc(topic, unicode.IsSpace) >= 0 {
		return fmt.Errorf("topic %q contains whitespace, which NATS subjects cannot", topic)
	}
	for _, tok := range strings.Split(topic, ".") {
		switch tok {
		case "":
			return fmt.Errorf("topic %q has an empty token (a leading, trailing or double '.')", topic)
		case "*", ">":
			return fmt.Errorf("topic %q contains the wildcard %q", topic, tok)
		}
	}
	return nil
}

// Headers. Publish metadata travels as message headers, one per key, so
// that other NATS clients see it as usual; a pair that cannot be a header
// goes into metadataHeader as JSON instead. Headers starting with "Nats-"
// are the server's and are not handed to subscribers as metadata.
const (
	// metadataHeader holds, as a JSON object, the metadata pairs that
	// cannot be headers (a key with ':' or spaces, a value with line
	// breaks or leading spaces, a key the broker reserves).
	metadataHeader = "Mecha-Metadata"
	// expiresHeader is the Unix time in milliseconds after which the
	// message is not delivered any more (metadata ttlInSeconds).
	expiresHeader = "Mecha-Expires"
	// serverPrefix marks the server's own headers (Nats-Msg-Id, Nats-TTL).
	serverPrefix = "Nats-"
	// brokerPrefix marks this broker's headers.
	brokerPrefix = "Mecha-"
)

// plainHeader reports whether k: v can be sent as a header and read back
// unchanged.
func plainHeader(k, v string) bool {
	if k == "" || hasPrefixFold(k, serverPrefix) || hasPrefixFold(k, brokerPrefix) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c == ':' || c == 0x7f {
			return false
		}
	}
	if v != "" && (v[0] == ' ' || v[0] == '\t') {
		return false
	}
	return !strings.ContainsAny(v, "\r\n")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// setMetadata writes md into h.
func setMetadata(h nats.Header, md map[string]string) error {
	var rest map[string]string
	for k, v := range md {
		if plainHeader(k, v) {
			h.Set(k, v)
			continue
		}
		if rest == nil {
			rest = map[string]string{}
		}
		rest[k] = v
	}
	if rest != nil {
		j, err := json.Marshal(rest)
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		h.Set(metadataHeader, string(j))
	}
	return nil
}

// readMetadata is the inverse of setMetadata: the headers of a delivered
// message as metadata, without the server's and the broker's own. It
// returns nil when there are none.
func readMetadata(h nats.Header) (map[string]string, error) {
	var md map[string]string
	var err error
	for k, vs := range h {
		if len(vs) == 0 || hasPrefixFold(k, serverPrefix) || hasPrefixFold(k, brokerPrefix) {
			continue
		}
		if md == nil {
			md = make(map[string]string, len(h))
		}
		md[k] = vs[0]
	}
	if j := h.Get(metadataHeader); j != "" {
		var rest map[string]string
		if err = json.Unmarshal([]byte(j), &rest); err == nil {
			if md == nil {
				md = make(map[string]string, len(rest))
			}
			for k, v := range rest {
				md[k] = v
			}
		}
	}
	return md, err
}

// cloudEventID returns the id of data when it is a JSON CloudEvent, used as
// Nats-Msg-Id so that the server drops a retried publish of the same event
// (within the stream's duplicate window, 2 minutes by default), as Dapr
// does. Anything else has no id.
func cloudEventID(data []byte) string {
	i := 0
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	if i == len(data) || data[i] != '{' {
		return ""
	}
	var ce struct {
		ID          string `json:"id"`
		SpecVersion string `json:"specversion"`
	}
	if json.Unmarshal(data, &ce) != nil || ce.SpecVersion == "" {
		return ""
	}
	return ce.ID
}
