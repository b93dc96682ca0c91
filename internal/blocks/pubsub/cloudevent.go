package pubsub

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

// The CloudEvents 1.0 attributes and Dapr extensions daprd writes
// (components-contrib pubsub/envelope.go).
const (
	fieldID              = "id"
	fieldSource          = "source"
	fieldType            = "type"
	fieldSpecVersion     = "specversion"
	fieldDataContentType = "datacontenttype"
	fieldData            = "data"
	fieldDataBase64      = "data_base64"
	fieldSubject         = "subject"
	fieldTime            = "time"
	fieldTopic           = "topic"
	fieldPubsub          = "pubsubname"
	fieldTraceID         = "traceid"
	fieldTraceParent     = "traceparent"
	fieldTraceState      = "tracestate"
	fieldExpiration      = "expiration"

	eventType       = "com.dapr.event.sent"
	bulkEventType   = "com.dapr.event.sent.bulk"
	specVersion     = "1.0"
	defaultSource   = "Dapr"
	defaultDataType = "text/plain"

	contentTypeCloudEvent = "application/cloudevents+json"
	contentTypeJSON       = "application/json"
	contentTypeBinary     = "application/octet-stream"
)

// isContentType matches a media type, ignoring case and parameters, as
// daprd's contenttype helpers do: "application/json; charset=utf-8" is
// JSON, "application/ld+json" is not.
func isContentType(ct, want string) bool {
	ct = strings.ToLower(ct)
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.TrimSpace(ct) == want
}

func isCloudEventContentType(ct string) bool { return isContentType(ct, contentTypeCloudEvent) }
func isJSONContentType(ct string) bool       { return isContentType(ct, contentTypeJSON) }
func isBinaryContentType(ct string) bool     { return isContentType(ct, contentTypeBinary) }

// isStringContentType is daprd's: text/* and application/xml.
func isStringContentType(ct string) bool {
	return strings.HasPrefix(strings.ToLower(ct), "text/") || isContentType(ct, "application/xml")
}

// envelopeRequest is what a CloudEvent is built from.
type envelopeRequest struct {
	source, topic, pubsub string
	contentType           string
	data                  []byte
	traceParent           string
	traceState            string
	metadata              map[string]string
}

// errNotCloudEvent is the reason a body sent as
// application/cloudevents+json is refused.
var errNotCloudEvent = errors.New("the body is not a JSON object")

// newEnvelope builds the CloudEvent daprd publishes, as a map that
// encoding/json writes with sorted keys:
//
//   - a body sent as application/cloudevents+json is taken as the event:
//     its fields are kept, topic, pubsubname and the trace fields are
//     overwritten, time, source, type and specversion filled when missing;
//   - otherwise a new event wraps the body: data holds the JSON value for
//     application/json (a body that is not JSON becomes a string), the
//     base64 text in data_base64 for application/octet-stream, the text for
//     anything else; metadata cloudevent.id|source|type|subject|traceid|
//     traceparent|tracestate override the defaults.
func newEnvelope(r envelopeRequest) (map[string]any, error) {
	if isCloudEventContentType(r.contentType) {
		return fromCloudEvent(r)
	}
	ov := overrides(r.metadata)
	id := cmp.Or(ov["cloudevent.id"], uuid.NewString())
	source := cmp.Or(ov["cloudevent.source"], r.source, defaultSource)
	typ := cmp.Or(ov["cloudevent.type"], eventType)
	traceID := cmp.Or(ov["cloudevent.traceid"], r.traceParent)
	traceState := cmp.Or(ov["cloudevent.tracestate"], r.traceState)
	if tp := ov["cloudevent.traceparent"]; tp != "" {
		traceID = tp
	}
	ct := cmp.Or(r.contentType, defaultDataType)
	ce := map[string]any{
		fieldID:              id,
		fieldSpecVersion:     specVersion,
		fieldDataContentType: ct,
		fieldSource:          source,
		fieldType:            typ,
		fieldTopic:           r.topic,
		fieldPubsub:          r.pubsub,
		fieldTraceID:         traceID,
		fieldTraceParent:     traceID,
		fieldTraceState:      traceState,
		fieldTime:            time.Now().Format(time.RFC3339),
	}
	switch {
	case isJSONContentType(ct) && json.Valid(r.data):
		// Kept as written (not re-encoded), so big numbers and key order
		// survive.
		ce[fieldData] = json.RawMessage(bytes.TrimSpace(r.data))
	case isBinaryContentType(ct):
		ce[fieldDataBase64] = base64.StdEncoding.EncodeToString(r.data)
	default:
		ce[fieldData] = string(r.data)
	}
	if s := ov["cloudevent.subject"]; s != "" {
		ce[fieldSubject] = s
	}
	return ce, nil
}

// fromCloudEvent takes the body as the event, as daprd's FromCloudEvent.
func fromCloudEvent(r envelopeRequest) (map[string]any, error) {
	var ce map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.data))
	dec.UseNumber() // numbers are kept exactly
	if err := dec.Decode(&ce); err != nil {
		return nil, err
	}
	if ce == nil || dec.More() {
		return nil, errNotCloudEvent
	}
	if _, ok := ce[fieldTime]; !ok {
		ce[fieldTime] = time.Now().Format(time.RFC3339)
	}
	ce[fieldTraceID] = r.traceParent
	ce[fieldTraceParent] = r.traceParent
	ce[fieldTraceState] = r.traceState
	ce[fieldTopic] = r.topic
	ce[fieldPubsub] = r.pubsub
	for k, def := range map[string]string{fieldSource: defaultSource, fieldType: eventType, fieldSpecVersion: specVersion} {
		if ce[k] == nil {
			ce[k] = def
		}
	}
	return ce, nil
}

// overrides collects the metadata keys that override envelope fields,
// lower-cased (daprd matches them case-insensitively).
func overrides(md map[string]string) map[string]string {
	var out map[string]string
	for k, v := range md {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "cloudevent.") {
			if out == nil {
				out = map[string]string{}
			}
			out[lk] = v
		}
	}
	return out
}

// applyTTL stamps the expiration daprd adds when the request sets a ttl and
// the broker does not expire messages itself; the subscriber side drops
// the event once it has passed.
func applyTTL(ce map[string]any, features []cpubsub.Feature, md map[string]string) {
	ttl, ok := ttlFrom(md)
	if !ok || cpubsub.Has(features, cpubsub.FeatureMessageTTL) {
		return
	}
	ce[fieldExpiration] = time.Now().UTC().Add(ttl).Format(time.RFC3339)
}

// ttlFrom reads metadata ttl or ttlInSeconds (a Go duration or a number of
// seconds), as components-contrib's TryGetTTL. A value that does not parse
// or is not positive is ignored, as daprd ignores it.
func ttlFrom(md map[string]string) (time.Duration, bool) {
	v, ok := metadataValue(md, "ttl")
	if !ok || v == "" {
		v, ok = metadataValue(md, "ttlInSeconds")
	}
	if !ok || v == "" {
		return 0, false
	}
	if d, err := time.ParseDuration(v); err == nil {
		return max(d, 0), true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	if n > int64(1<<63-1)/int64(time.Second) {
		return time.Duration(1<<63 - 1), true
	}
	return time.Duration(n) * time.Second, true
}

// rawPayload reads metadata rawPayload; a value that is not a boolean is
// the client's error (ERR_PUBSUB_REQUEST_METADATA).
func rawPayload(md map[string]string) (bool, error) {
	v, ok := md["rawPayload"]
	if !ok || v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("rawPayload value must be a valid boolean: actual is '" + v + "'")
	}
	return b, nil
}
