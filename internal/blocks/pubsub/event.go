package pubsub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	cpubsub "github.com/mecha-dev/mecha/components/pubsub"
)

// metadataPubsub is the message metadata key naming the pubsub, added for
// the app as daprd does (it arrives as a header or gRPC metadata).
const metadataPubsub = "pubsubName"

// ceHeaderPrefix marks CloudEvent attributes carried as message metadata
// in binary mode (Kafka's ce_ headers).
const ceHeaderPrefix = "ce_"

// event is a delivered message as the subscriber side sees it.
type event struct {
	// ce is the CloudEvent, decoded (numbers are float64, as daprd's).
	ce map[string]any
	// body is what HTTP apps get: the broker's bytes, or for raw-payload
	// subscriptions the synthetic envelope's JSON.
	body []byte
	// data is the raw message, kept for raw-payload bulk entries and
	// binary-mode events.
	data []byte
	// binary is set for binary-mode events, whose data is not JSON.
	binary   bool
	topic    string
	pubsub   string
	metadata map[string]string
	// contentType is the broker's content-type metadata, if any.
	contentType string
}

// decode turns a broker message into an event, as daprd's subscription
// handler: raw-payload subscriptions get a synthetic envelope (data in
// data_base64, datacontenttype application/octet-stream), messages whose
// content-type metadata is application/octet-stream are binary-mode
// events, and anything else must be a JSON CloudEvent.
func (b *Block) decode(br *broker, s *subscription, msg *cpubsub.Message) (*event, error) {
	md := make(map[string]string, len(msg.Metadata)+1)
	maps.Copy(md, msg.Metadata)
	md[metadataPubsub] = br.name
	topic := msg.Topic
	if topic == "" {
		topic = s.topic
	} else if br.namespaced {
		topic = strings.Replace(topic, b.opts.Namespace, "", 1)
	}
	ev := &event{topic: topic, pubsub: br.name, metadata: md, data: msg.Data}
	ct, hasCT := md["content-type"]
	ev.contentType = ct
	if !hasCT {
		ct = contentTypeJSON
	}
	switch {
	case s.raw:
		ev.ce = map[string]any{
			fieldID:              uuid.NewString(),
			fieldSpecVersion:     specVersion,
			fieldDataContentType: contentTypeBinary,
			fieldSource:          defaultSource,
			fieldType:            eventType,
			fieldTopic:           topic,
			fieldPubsub:          br.name,
			fieldDataBase64:      base64.StdEncoding.EncodeToString(msg.Data),
		}
		if v, ok := md[fieldTraceID]; ok {
			ev.ce[fieldTraceID] = v
		}
		if v, ok := md[fieldTraceParent]; ok {
			ev.ce[fieldTraceParent], ev.ce[fieldTraceID] = v, v
		}
		if v, ok := md[fieldTraceState]; ok {
			ev.ce[fieldTraceState] = v
		}
		body, err := json.Marshal(ev.ce)
		if err != nil {
			return nil, err
		}
		ev.body = body
	case isBinaryContentType(ct):
		ev.binary = true
		ev.ce = map[string]any{}
		for k, v := range md {
			if name, ok := strings.CutPrefix(strings.ToLower(k), ceHeaderPrefix); ok {
				ev.ce[name] = v
			}
		}
		ev.ce[fieldDataContentType] = ct
		ev.body = msg.Data
	default:
		if err := json.Unmarshal(msg.Data, &ev.ce); err != nil {
			return nil, fmt.Errorf("the message is not a CloudEvent: %w", err)
		}
		if ev.ce == nil {
			return nil, errors.New("the message is not a CloudEvent: not a JSON object")
		}
		if _, ok := ev.ce[fieldTraceID]; !ok {
			if v, ok := md[fieldTraceID]; ok {
				ev.ce[fieldTraceID] = v
			}
		}
		if _, ok := ev.ce[fieldTraceParent]; !ok {
			if v, ok := md[fieldTraceParent]; ok {
				ev.ce[fieldTraceParent], ev.ce[fieldTraceID] = v, v
			}
		}
		if _, ok := ev.ce[fieldTraceState]; !ok {
			if v, ok := md[fieldTraceState]; ok {
				ev.ce[fieldTraceState] = v
			}
		}
		ev.body = msg.Data
	}
	return ev, nil
}

// id is the event's id, for logs and stream acknowledgements.
func (e *event) id() string { return e.str(fieldID) }

func (e *event) str(k string) string {
	s, _ := e.ce[k].(string)
	return s
}

// expired reports whether the event carries an expiration that has
// passed; an expiration that does not parse never expires, as in daprd.
func (e *event) expired() bool {
	v, ok := e.ce[fieldExpiration]
	if !ok || v == "" {
		return false
	}
	t, err := time.Parse(time.RFC3339, fmt.Sprint(v))
	return err == nil && t.Before(time.Now())
}

// traceContext returns the W3C trace context the event carries.
func (e *event) traceContext() (parent, state string) {
	parent = e.str(fieldTraceParent)
	if parent == "" {
		parent = e.str(fieldTraceID)
	}
	return parent, e.str(fieldTraceState)
}

// errEnvelopeData is daprd's error for a data field of the wrong type.
var errEnvelopeData = errors.New("unexpected data type encountered in envelope")

// cloudEventFields are the attributes that TopicEventRequest has fields
// for; every other attribute is an extension.
var cloudEventFields = map[string]bool{
	fieldID: true, fieldSource: true, fieldDataContentType: true, fieldType: true,
	fieldSpecVersion: true, fieldData: true, fieldDataBase64: true,
}

// eventData extracts the data gRPC apps receive, as daprd: data_base64
// decoded; data as text for text/* and application/xml; data as JSON for
// JSON and CloudEvent content types (the bytes as published, not
// re-encoded); the raw bytes of binary-mode events.
func (e *event) eventData() ([]byte, error) {
	ct := e.str(fieldDataContentType)
	if v, ok := e.ce[fieldDataBase64]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			return nil, errEnvelopeData
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("unable to base64 decode cloudEvent field data_base64: %w", err)
		}
		return d, nil
	}
	if e.binary {
		return e.data, nil
	}
	v, ok := e.ce[fieldData]
	if !ok || v == nil {
		return nil, nil
	}
	switch {
	case isStringContentType(ct):
		s, ok := v.(string)
		if !ok {
			return nil, errEnvelopeData
		}
		return []byte(s), nil
	case isJSONContentType(ct) || isCloudEventContentType(ct):
		var d struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(e.body, &d); err == nil && len(d.Data) > 0 {
			var buf bytes.Buffer
			if json.Compact(&buf, d.Data) == nil {
				return buf.Bytes(), nil
			}
		}
		return json.Marshal(v)
	}
	return nil, nil
}

// extensions are the attributes without a TopicEventRequest field.
func (e *event) extensions() (*structpb.Struct, error) {
	ext := make(map[string]any, len(e.ce))
	for k, v := range e.ce {
		if !cloudEventFields[k] {
			ext[k] = v
		}
	}
	if s, err := structpb.NewStruct(ext); err == nil {
		return s, nil
	}
	// Values structpb does not take directly go through JSON, as daprd.
	b, err := json.Marshal(ext)
	if err != nil {
		return nil, fmt.Errorf("unable to marshal cloudEvent extensions: %w", err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("unable to convert cloudEvent extensions: %w", err)
	}
	return s, nil
}

// topicEventRequest is the event as gRPC apps and streaming subscribers
// receive it (OnTopicEvent, SubscribeTopicEventsAlpha1).
func (e *event) topicEventRequest(path string) (*runtimev1.TopicEventRequest, error) {
	data, err := e.eventData()
	if err != nil {
		return nil, err
	}
	ext, err := e.extensions()
	if err != nil {
		return nil, err
	}
	return &runtimev1.TopicEventRequest{
		Id: e.id(), Source: e.str(fieldSource), Type: e.str(fieldType), SpecVersion: e.str(fieldSpecVersion),
		DataContentType: e.str(fieldDataContentType), Data: data, Topic: e.topic, PubsubName: e.pubsub,
		Path: path, Extensions: ext,
	}, nil
}

// cloudEventRequest is the event as an entry of OnBulkTopicEvent.
func (e *event) cloudEventRequest() (*runtimev1.TopicEventCERequest, error) {
	data, err := e.eventData()
	if err != nil {
		return nil, err
	}
	ext, err := e.extensions()
	if err != nil {
		return nil, err
	}
	return &runtimev1.TopicEventCERequest{
		Id: e.id(), Source: e.str(fieldSource), Type: e.str(fieldType), SpecVersion: e.str(fieldSpecVersion),
		DataContentType: e.str(fieldDataContentType), Data: data, Extensions: ext,
	}, nil
}
