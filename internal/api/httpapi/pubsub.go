package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
)

// pubsubRoutes registers the pub/sub API. The topic may contain "/".
// Bulk publishing is served on the alpha path and, as daprd 1.18 does, on
// /v1.0 too. A path without a pubsub or a topic gets daprd's "empty" errors.
func (a *api) pubsubRoutes(mux *http.ServeMux) {
	for _, m := range []string{http.MethodPost, http.MethodPut} {
		mux.HandleFunc(m+" /v1.0/publish/{pubsub}/{topic...}", a.publish)
		mux.HandleFunc(m+" /v1.0/publish/{pubsub}", a.publish)
		mux.HandleFunc(m+" /v1.0/publish", a.publish)
		mux.HandleFunc(m+" /v1.0/publish/bulk/{pubsub}/{topic...}", a.bulkPublish)
		mux.HandleFunc(m+" /v1.0-alpha1/publish/bulk/{pubsub}/{topic...}", a.bulkPublish)
		mux.HandleFunc(m+" /v1.0-alpha1/publish/bulk/{pubsub}", a.bulkPublish)
		mux.HandleFunc(m+" /v1.0-alpha1/publish/bulk", a.bulkPublish)
	}
}

// traceContext is the caller's W3C trace context.
func traceContext(r *http.Request) (parent, state string) {
	return r.Header.Get("traceparent"), r.Header.Get("tracestate")
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	if a.PubSub == nil {
		apierr.WriteHTTP(w, apierr.PubsubNotConfigured.New("pubsub %s is not configured", r.PathValue("pubsub")))
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	parent, state := traceContext(r)
	err = a.PubSub.Publish(r.Context(), pubsub.PublishRequest{
		PubsubName: r.PathValue("pubsub"), Topic: r.PathValue("topic"), Data: body,
		ContentType: r.Header.Get("Content-Type"), Metadata: requestMetadata(query(r)),
		TraceParent: parent, TraceState: state,
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bulkEntryJSON is one entry of a bulk publish body. The event is any JSON
// value; how it becomes bytes depends on contentType (daprd's
// ConvertEventToBytes).
type bulkEntryJSON struct {
	EntryID     string            `json:"entryId"`
	Event       json.RawMessage   `json:"event"`
	ContentType string            `json:"contentType"`
	Metadata    map[string]string `json:"metadata"`
}

// bulkPublishResponse is daprd's answer when entries failed.
type bulkPublishResponse struct {
	FailedEntries []bulkFailedEntryJSON `json:"failedEntries"`
	ErrorCode     string                `json:"errorCode,omitempty"`
}

type bulkFailedEntryJSON struct {
	EntryID string `json:"entryId"`
	Error   string `json:"error,omitempty"`
}

var errContentTypeMismatch = errors.New("error: mismatch between contentType and event")

// eventBytes converts an entry's event as daprd: for
// application/octet-stream a base64 string, decoded; for text/* and
// application/xml a string; for JSON and CloudEvents the JSON itself;
// anything else (including no contentType) is refused.
func eventBytes(event json.RawMessage, contentType string) ([]byte, error) {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch {
	case ct == "application/octet-stream":
		var s string
		if json.Unmarshal(event, &s) != nil {
			return nil, errContentTypeMismatch
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("error: unable to decode base64 application/octect-stream data: %w", err)
		}
		return b, nil
	case strings.HasPrefix(ct, "text/") || ct == "application/xml":
		var s string
		if json.Unmarshal(event, &s) != nil {
			return nil, errContentTypeMismatch
		}
		return []byte(s), nil
	case ct == "application/json" || ct == "application/cloudevents+json":
		var buf bytes.Buffer
		if len(event) == 0 {
			return []byte("null"), nil
		}
		if err := json.Compact(&buf, event); err != nil {
			return nil, fmt.Errorf("%v: %w", errContentTypeMismatch, err)
		}
		return buf.Bytes(), nil
	}
	return nil, errContentTypeMismatch
}

func (a *api) bulkPublish(w http.ResponseWriter, r *http.Request) {
	if a.PubSub == nil {
		apierr.WriteHTTP(w, apierr.PubsubNotConfigured.New("pubsub %s is not configured", r.PathValue("pubsub")))
		return
	}
	pubsubName, topic := r.PathValue("pubsub"), r.PathValue("topic")
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	var in []bulkEntryJSON
	if err := json.Unmarshal(body, &in); err != nil {
		apierr.WriteHTTP(w, apierr.PubsubUnmarshalEvents.New("error when unmarshaling the request for topic %s pubsub %s: %v", topic, pubsubName, err).
			WithResource("pubsub", pubsubName).WithMetadata("appID", a.AppID))
		return
	}
	entries := make([]pubsub.BulkEntry, len(in))
	for i, e := range in {
		data, err := eventBytes(e.Event, e.ContentType)
		if err != nil {
			apierr.WriteHTTP(w, apierr.PubsubMarshalEnvelope.New("error when marshalling cloud event envelope for topic %s pubsub %s: %v", topic, pubsubName, err).
				WithResource("pubsub", pubsubName).WithMetadata("appID", a.AppID, "error", err.Error()))
			return
		}
		entries[i] = pubsub.BulkEntry{EntryID: e.EntryID, Event: data, ContentType: e.ContentType, Metadata: e.Metadata}
	}
	parent, state := traceContext(r)
	res, err := a.PubSub.BulkPublish(r.Context(), pubsub.BulkPublishRequest{
		PubsubName: pubsubName, Topic: topic, Entries: entries, Metadata: requestMetadata(query(r)),
		TraceParent: parent, TraceState: state,
	})
	if len(res.FailedEntries) == 0 {
		if err != nil {
			apierr.WriteHTTP(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	out := bulkPublishResponse{ErrorCode: apierr.PubsubPublish.Code, FailedEntries: make([]bulkFailedEntryJSON, len(res.FailedEntries))}
	for i, f := range res.FailedEntries {
		out.FailedEntries[i] = bulkFailedEntryJSON{EntryID: f.EntryID, Error: f.Error}
	}
	b, _ := json.Marshal(out)
	// daprd also reports the failure as response metadata headers (kept
	// short here: a header is no place for a thousand entries).
	if len(b) <= 4<<10 {
		w.Header().Set("metadata.responseData", string(b))
	}
	if err != nil && httpguts.ValidHeaderFieldValue(err.Error()) {
		w.Header().Set("metadata.error", err.Error())
	}
	writeJSON(w, http.StatusInternalServerError, b)
}
