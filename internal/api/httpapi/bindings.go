package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"

	"golang.org/x/net/http/httpguts"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/bindings"
)

// bindingsRoutes registers the bindings API.
func (a *api) bindingsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1.0/bindings/{name}", a.invokeBinding)
	mux.HandleFunc("PUT /v1.0/bindings/{name}", a.invokeBinding)
}

// bindingRequest is the body of an output binding call. Data is kept as
// JSON text: daprd re-serialises it, so a JSON string reaches the component
// with its quotes, and so does Mecha (compacted, without daprd's number and
// key-order changes).
type bindingRequest struct {
	Data      json.RawMessage   `json:"data"`
	Metadata  map[string]string `json:"metadata"`
	Operation string            `json:"operation"`
}

// traceHeaders are copied from the request into the binding metadata, as
// daprd passes its trace context to output bindings.
var traceHeaders = []string{"traceparent", "tracestate", "baggage"}

func (a *api) invokeBinding(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	var req bindingRequest
	if err := json.Unmarshal(body, &req); err != nil {
		apierr.WriteHTTP(w, apierr.MalformedRequest.Wrap(err, "failed deserializing HTTP body"))
		return
	}
	data := []byte("null")
	if len(req.Data) > 0 {
		var buf bytes.Buffer
		buf.Grow(len(req.Data))
		if json.Compact(&buf, req.Data) == nil {
			data = buf.Bytes()
		}
	}
	md := req.Metadata
	for _, h := range traceHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			if md == nil {
				md = map[string]string{}
			}
			md[h] = joinComma(v)
		}
	}
	resp, err := a.Bindings.Invoke(r.Context(), bindings.InvokeRequest{
		Name: r.PathValue("name"), Operation: req.Operation, Data: data, Metadata: md,
	})
	if resp != nil {
		// Set even on failure: bindings.http reports the status so.
		for k, v := range resp.Metadata {
			if k := "metadata." + k; httpguts.ValidHeaderFieldName(k) {
				w.Header().Add(k, v)
			}
		}
	}
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if resp == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, resp.Data)
}

func joinComma(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	var b bytes.Buffer
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(v)
	}
	return b.String()
}
