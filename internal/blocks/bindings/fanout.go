package bindings

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

// appResponse is Dapr's optional answer of an app to an input event: state
// to save and output bindings to invoke with data.
type appResponse struct {
	StoreName   string          `json:"storeName"`
	State       []stateItemJSON `json:"state"`
	To          []string        `json:"to"`
	Data        json.RawMessage `json:"data"`
	Concurrency string          `json:"concurrency"`
}

// parseAppResponse reads an HTTP app's answer. Only a JSON object that asks
// for something ("to" or "state") counts; any other body is just the app's
// reply. (daprd 1.14+ honours the fan-out for gRPC apps only; Mecha also
// honours it for HTTP apps, as older daprd and Dapr's documentation do.)
func parseAppResponse(body []byte) (appResponse, bool) {
	var r appResponse
	t := bytes.TrimSpace(body)
	if len(t) == 0 || t[0] != '{' || json.Unmarshal(t, &r) != nil {
		return r, false
	}
	return r, len(r.To) > 0 || len(r.State) > 0
}

// grpcAppResponse converts a gRPC app's answer. Its data becomes the JSON
// value sent to the "to" bindings, or null when it is not JSON, as daprd.
func grpcAppResponse(resp *runtimev1.BindingEventResponse) (appResponse, bool) {
	r := appResponse{StoreName: resp.GetStoreName(), To: resp.GetTo(), Concurrency: "sequential"}
	if resp.GetConcurrency() == runtimev1.BindingEventResponse_PARALLEL {
		r.Concurrency = "parallel"
	}
	if d := resp.GetData(); len(d) > 0 && json.Valid(d) {
		r.Data = d
	}
	for _, it := range resp.GetStates() {
		si := stateItemJSON{Key: it.GetKey(), Value: it.GetValue(), Metadata: it.GetMetadata()}
		if e := it.GetEtag(); e != nil {
			v := e.GetValue()
			si.ETag = &v
		}
		r.State = append(r.State, si)
	}
	return r, len(r.To) > 0 || len(r.State) > 0
}

// fanOut performs what the app asked for in its answer: each "to" output
// binding is invoked with operation create and the JSON of "data", one
// after the other (stopping at the first failure), or all at once with
// "concurrency": "parallel". Failures are logged, not returned: the event
// itself was accepted, as in daprd.
func (b *Block) fanOut(runCtx, ctx context.Context, from string, r appResponse) {
	log := b.log.With("binding", from)
	if len(r.State) > 0 {
		b.saveAppState(ctx, log, r)
	}
	if len(r.To) == 0 {
		return
	}
	data := []byte("null")
	if len(bytes.TrimSpace(r.Data)) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, r.Data) == nil {
			data = buf.Bytes()
		}
	}
	send := func(ctx context.Context, to string) error {
		_, err := b.Invoke(ctx, InvokeRequest{Name: to, Operation: string(cbindings.OperationCreate), Data: data})
		if err != nil {
			log.Error("output binding named in the app's answer failed", "to", to, "error", err)
		}
		return err
	}
	if r.Concurrency == "parallel" {
		for _, to := range r.To {
			b.wg.Go(func() { _ = send(runCtx, to) })
		}
		return
	}
	for _, to := range r.To {
		if send(ctx, to) != nil {
			return
		}
	}
}

// stateItemJSON is one item of the app's "state" answer, in the shape of a
// state save request item.
type stateItemJSON struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	ETag     *string           `json:"etag"`
	Metadata map[string]string `json:"metadata"`
}

// StateSaver saves items in a state store; the runtime wires the state
// block's Save.
type StateSaver func(ctx context.Context, store string, items []state.SaveItem) error

// SetStateSaver lets input binding answers save state ("storeName" and
// "state"), as daprd does.
func (b *Block) SetStateSaver(s StateSaver) { b.saveState = s }

// saveAppState saves the state an app's answer carries; failures are
// logged: the event itself was accepted, as in daprd.
func (b *Block) saveAppState(ctx context.Context, log *slog.Logger, r appResponse) {
	if b.saveState == nil || r.StoreName == "" {
		log.Warn("the app's answer asks to save state but names no usable state store; ignored", "storeName", r.StoreName, "items", len(r.State))
		return
	}
	items := make([]state.SaveItem, len(r.State))
	for i, it := range r.State {
		v := []byte(it.Value)
		if v == nil {
			v = []byte("null")
		}
		items[i] = state.SaveItem{Key: it.Key, Value: v, ETag: it.ETag, Metadata: it.Metadata}
	}
	if err := b.saveState(ctx, r.StoreName, items); err != nil {
		log.Error("saving the state the app's answer carries failed", "storeName", r.StoreName, "error", err)
	}
}
