package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

func (a *api) getState(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	item, err := a.State.Get(r.Context(), state.GetRequest{
		Store:       r.PathValue("store"),
		Key:         r.PathValue("key"),
		Consistency: q.Get("consistency"),
		Metadata:    requestMetadata(q),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if item.Data == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	h := w.Header()
	if item.ETag != "" {
		h["Etag"] = []string{item.ETag}
	}
	for k, v := range item.Metadata {
		h.Set("metadata."+k, v)
	}
	writeJSON(w, http.StatusOK, item.Data)
}

// stateOptions is the JSON shape of per-item options.
type stateOptions struct {
	Concurrency string `json:"concurrency"`
	Consistency string `json:"consistency"`
}

// saveItem is the JSON shape of one item of a save request.
type saveItem struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]string `json:"metadata"`
	Options  *stateOptions     `json:"options"`
}

func (it *saveItem) toBlock(queryMD map[string]string) state.SaveItem {
	out := state.SaveItem{Key: it.Key, Value: compactValue(it.Value), ETag: it.ETag, Metadata: it.Metadata}
	if len(queryMD) > 0 {
		if out.Metadata == nil {
			out.Metadata = make(map[string]string, len(queryMD))
		}
		for k, v := range queryMD {
			if _, set := out.Metadata[k]; !set {
				out.Metadata[k] = v
			}
		}
	}
	if it.Options != nil {
		out.Options = state.Options{Concurrency: it.Options.Concurrency, Consistency: it.Options.Consistency}
	}
	return out
}

// compactValue stores a JSON value in its compact form; a missing value is
// stored as JSON null, as daprd does.
func compactValue(v json.RawMessage) []byte {
	if len(v) == 0 {
		return []byte("null")
	}
	if bytes.IndexAny(v, " \t\r\n") < 0 {
		return v // already compact
	}
	var buf bytes.Buffer
	buf.Grow(len(v))
	if json.Compact(&buf, v) != nil {
		return v
	}
	return buf.Bytes()
}

func (a *api) decode(r *http.Request, dst any) error {
	body, err := a.readBody(r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return apierr.MalformedRequest.Wrap(err, "failed deserializing HTTP body")
	}
	return nil
}

func (a *api) saveState(w http.ResponseWriter, r *http.Request) {
	var items []saveItem
	if err := a.decode(r, &items); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	md := requestMetadata(query(r))
	reqs := make([]state.SaveItem, len(items))
	for i := range items {
		reqs[i] = items[i].toBlock(md)
	}
	if err := a.State.Save(r.Context(), r.PathValue("store"), reqs); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) deleteState(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	req := state.DeleteRequest{
		Store:    r.PathValue("store"),
		Key:      r.PathValue("key"),
		Metadata: requestMetadata(q),
		Options:  state.Options{Concurrency: q.Get("concurrency"), Consistency: q.Get("consistency")},
	}
	if etag := r.Header.Get("If-Match"); etag != "" {
		req.ETag = &etag
	}
	if err := a.State.Delete(r.Context(), req); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type bulkGetRequest struct {
	Keys        []string          `json:"keys"`
	Parallelism int               `json:"parallelism"`
	Metadata    map[string]string `json:"metadata"`
}

type bulkGetItem struct {
	Key      string            `json:"key"`
	Data     json.RawMessage   `json:"data,omitempty"`
	ETag     *string           `json:"etag,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func (a *api) bulkGetState(w http.ResponseWriter, r *http.Request) {
	var req bulkGetRequest
	if err := a.decode(r, &req); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	md := requestMetadata(query(r))
	for k, v := range req.Metadata {
		if md == nil {
			md = map[string]string{}
		}
		md[k] = v
	}
	items, err := a.State.BulkGet(r.Context(), state.BulkGetRequest{Store: r.PathValue("store"), Keys: req.Keys, Parallelism: req.Parallelism, Metadata: md})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	out := make([]bulkGetItem, len(items))
	for i, it := range items {
		out[i] = bulkGetItem{Key: it.Key, Metadata: it.Metadata, Error: it.Error}
		if it.Error != "" {
			continue
		}
		if it.Data != nil {
			out[i].Data = jsonData(it.Data)
		}
		if it.ETag != "" {
			etag := it.ETag
			out[i].ETag = &etag
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		apierr.WriteHTTP(w, apierr.Internal.Wrap(err, "encoding bulk response"))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// jsonData embeds stored bytes in a JSON document: as-is when they are JSON
// (the usual case for values saved over HTTP), else as a JSON string.
func jsonData(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

type txOperation struct {
	Operation string   `json:"operation"`
	Request   saveItem `json:"request"`
}

type txRequest struct {
	Operations []txOperation     `json:"operations"`
	Metadata   map[string]string `json:"metadata"`
}

func (a *api) transaction(w http.ResponseWriter, r *http.Request) {
	var req txRequest
	if err := a.decode(r, &req); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	md := req.Metadata
	for k, v := range requestMetadata(query(r)) {
		if md == nil {
			md = map[string]string{}
		}
		md[k] = v
	}
	ops := make([]state.Operation, len(req.Operations))
	for i, op := range req.Operations {
		ops[i] = state.Operation{Type: op.Operation, Item: op.Request.toBlock(nil)}
		if op.Operation == "delete" {
			ops[i].Item.Value = nil
		}
	}
	if err := a.State.Transact(r.Context(), r.PathValue("store"), ops, md); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
