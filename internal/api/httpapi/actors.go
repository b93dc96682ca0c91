package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// actorsRoutes registers the actor API.
func (a *api) actorsRoutes(mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		mux.HandleFunc(m+" /v1.0/actors/{type}/{id}/method/{method...}", a.invokeActor)
	}
	mux.HandleFunc("GET /v1.0/actors/{type}/{id}/state/{key}", a.getActorState)
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/state", a.actorStateTransaction)
	mux.HandleFunc("PUT /v1.0/actors/{type}/{id}/state", a.actorStateTransaction)
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/reminders/{name}", a.createActorReminder)
	mux.HandleFunc("PUT /v1.0/actors/{type}/{id}/reminders/{name}", a.createActorReminder)
	mux.HandleFunc("GET /v1.0/actors/{type}/{id}/reminders/{name}", a.getActorReminder)
	mux.HandleFunc("DELETE /v1.0/actors/{type}/{id}/reminders/{name}", a.deleteActorReminder)
	mux.HandleFunc("POST /v1.0/actors/{type}/{id}/timers/{name}", a.createActorTimer)
	mux.HandleFunc("PUT /v1.0/actors/{type}/{id}/timers/{name}", a.createActorTimer)
	mux.HandleFunc("DELETE /v1.0/actors/{type}/{id}/timers/{name}", a.deleteActorTimer)
}

// actorsOrErr returns the actor runtime, or writes daprd's error for a
// sidecar without one.
func (a *api) actorsOrErr(w http.ResponseWriter) *actors.Block {
	if a.Actors == nil {
		apierr.WriteHTTP(w, apierr.ActorRuntimeNotFound.New("the actor runtime is not configured"))
	}
	return a.Actors
}

func (a *api) invokeActor(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	resp, err := ab.Invoke(r.Context(), &actors.InvokeRequest{
		ActorType:   r.PathValue("type"),
		ActorID:     r.PathValue("id"),
		Method:      r.PathValue("method"),
		Data:        body,
		ContentType: r.Header.Get("Content-Type"),
		Metadata:    invokemsg.FromHTTPHeader(r.Header),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	h := w.Header()
	invokemsg.ToHTTPHeader(resp.Headers, h)
	if resp.ContentType != "" {
		h.Set("Content-Type", resp.ContentType)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Data)
}

func (a *api) getActorState(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	item, err := ab.GetState(r.Context(), r.PathValue("type"), r.PathValue("id"), r.PathValue("key"))
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if len(item.Data) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	for k, v := range item.Metadata {
		w.Header().Set("metadata."+k, v)
	}
	writeJSON(w, http.StatusOK, item.Data)
}

// actorStateOp is one element of the transaction body.
type actorStateOp struct {
	Operation string          `json:"operation"`
	Request   json.RawMessage `json:"request"`
}

type actorStateRequest struct {
	Key      string            `json:"key"`
	Value    json.RawMessage   `json:"value"`
	Metadata map[string]string `json:"metadata"`
}

func (a *api) actorStateTransaction(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	var in []actorStateOp
	if err := json.Unmarshal(body, &in); err != nil {
		apierr.WriteHTTP(w, apierr.MalformedRequest.New("failed deserializing HTTP body: %v", err))
		return
	}
	ops := make([]actors.StateOperation, 0, len(in))
	for _, o := range in {
		req := bytes.TrimSpace(o.Request)
		if len(req) == 0 || bytes.Equal(req, []byte("null")) {
			apierr.WriteHTTP(w, apierr.ActorStateTransactionSave.New("error saving actor transaction state: request data is empty"))
			return
		}
		switch strings.ToLower(o.Operation) {
		case "upsert", "delete":
		case "":
			apierr.WriteHTTP(w, apierr.ActorStateTransactionSave.New("error saving actor transaction state: operation is empty"))
			return
		default:
			// daprd answers an unknown operation over HTTP with the
			// transaction error (over gRPC with Unimplemented).
			apierr.WriteHTTP(w, apierr.ActorStateTransactionSave.New("error saving actor transaction state: operation type %s not supported", o.Operation))
			return
		}
		var sr actorStateRequest
		if err := json.Unmarshal(req, &sr); err != nil {
			apierr.WriteHTTP(w, apierr.MalformedRequest.New("failed deserializing HTTP body: %v", err))
			return
		}
		value := []byte(sr.Value)
		if len(value) == 0 {
			value = []byte("null")
		}
		ops = append(ops, actors.StateOperation{Operation: o.Operation, Key: sr.Key, Value: value, Metadata: sr.Metadata})
	}
	if err := ab.TransactState(r.Context(), r.PathValue("type"), r.PathValue("id"), ops); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// reminderBody is the body of a reminder or timer registration.
type reminderBody struct {
	DueTime   string          `json:"dueTime"`
	Period    string          `json:"period"`
	TTL       string          `json:"ttl"`
	Callback  string          `json:"callback"`
	Data      json.RawMessage `json:"data"`
	Overwrite *bool           `json:"overwrite"`
}

// decodeSchedule reads a reminder or timer body; data null counts as none.
func (a *api) decodeSchedule(w http.ResponseWriter, r *http.Request) (*reminderBody, bool) {
	body, err := a.readBody(r)
	if err != nil {
		apierr.WriteHTTP(w, err)
		return nil, false
	}
	var in reminderBody
	if err := json.Unmarshal(body, &in); err != nil {
		apierr.WriteHTTP(w, apierr.MalformedRequest.New("failed deserializing HTTP body: %v", err))
		return nil, false
	}
	if d := bytes.TrimSpace(in.Data); len(d) == 0 || bytes.Equal(d, []byte("null")) {
		in.Data = nil
	}
	return &in, true
}

func (a *api) createActorReminder(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	in, ok := a.decodeSchedule(w, r)
	if !ok {
		return
	}
	err := ab.CreateReminder(r.Context(), actors.ReminderRequest{
		ActorType: r.PathValue("type"), ActorID: r.PathValue("id"), Name: r.PathValue("name"),
		Data: in.Data, DueTime: in.DueTime, Period: in.Period, TTL: in.TTL, Overwrite: in.Overwrite,
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// reminderJSON is daprd's GET reminder answer.
type reminderJSON struct {
	ActorID   string          `json:"actorID,omitempty"`
	ActorType string          `json:"actorType,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	DueTime   string          `json:"dueTime,omitempty"`
	Period    string          `json:"period,omitempty"`
	TTL       string          `json:"ttl,omitempty"`
}

func (a *api) getActorReminder(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	rem, err := ab.GetReminder(r.Context(), r.PathValue("type"), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	out := reminderJSON{ActorID: rem.ActorID, ActorType: rem.ActorType, Data: rem.Data, DueTime: rem.DueTime, Period: rem.Period}
	if !rem.Expiration.IsZero() {
		out.TTL = rem.Expiration.Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(out)
	if err != nil {
		apierr.WriteHTTP(w, apierr.ActorReminderGet.Wrap(err, "error getting actor reminder"))
		return
	}
	writeJSON(w, http.StatusOK, b)
}

func (a *api) deleteActorReminder(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	if err := ab.DeleteReminder(r.Context(), r.PathValue("type"), r.PathValue("id"), r.PathValue("name")); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) createActorTimer(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	in, ok := a.decodeSchedule(w, r)
	if !ok {
		return
	}
	err := ab.CreateTimer(r.Context(), actors.TimerRequest{
		ActorType: r.PathValue("type"), ActorID: r.PathValue("id"), Name: r.PathValue("name"),
		DueTime: in.DueTime, Period: in.Period, TTL: in.TTL, Callback: in.Callback, Data: in.Data,
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) deleteActorTimer(w http.ResponseWriter, r *http.Request) {
	ab := a.actorsOrErr(w)
	if ab == nil {
		return
	}
	if err := ab.DeleteTimer(r.Context(), r.PathValue("type"), r.PathValue("id"), r.PathValue("name")); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
