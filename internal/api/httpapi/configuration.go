package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/configuration"
)

// configurationRoutes registers the configuration API under the stable
// /v1.0 prefix and the /v1.0-alpha1 one daprd still serves.
func (a *api) configurationRoutes(mux *http.ServeMux) {
	for _, v := range []string{"v1.0", "v1.0-alpha1"} {
		mux.HandleFunc("GET /"+v+"/configuration/{store}", a.getConfiguration)
		mux.HandleFunc("GET /"+v+"/configuration/{store}/subscribe", a.subscribeConfiguration)
		mux.HandleFunc("GET /"+v+"/configuration/{store}/{id}/unsubscribe", a.unsubscribeConfiguration)
	}
}

// getConfiguration answers 200 with {"key": {"value","version","metadata"}},
// or 204 when no item matched, as daprd does.
func (a *api) getConfiguration(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	items, err := a.Configuration.Get(r.Context(), configuration.GetRequest{
		Store:    r.PathValue("store"),
		Keys:     q["key"],
		Metadata: requestMetadata(q),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if len(items) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := json.Marshal(configuration.WireItems(items))
	if err != nil {
		apierr.WriteHTTP(w, apierr.Internal.Wrap(err, "encoding configuration items"))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// subscribeConfiguration answers 200 {"id": ...}; updates then reach the app
// as POST /configuration/{store}/{key}.
func (a *api) subscribeConfiguration(w http.ResponseWriter, r *http.Request) {
	q := query(r)
	id, err := a.Configuration.SubscribeApp(r.Context(), configuration.SubscribeRequest{
		Store:    r.PathValue("store"),
		Keys:     q["key"],
		Metadata: requestMetadata(q),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	body, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	writeJSON(w, http.StatusOK, body)
}

// unsubscribeResponse is daprd's body for unsubscribe; with omitempty, a
// failure is {"message": ...} without "ok".
type unsubscribeResponse struct {
	OK      bool   `json:"ok,omitempty"`
	Message string `json:"message,omitempty"`
}

// unsubscribeConfiguration answers 200 {"ok":true}; an unknown subscription
// is 500 with daprd's {"message": ...} body (no errorCode); an unknown store
// is the usual error body.
func (a *api) unsubscribeConfiguration(w http.ResponseWriter, r *http.Request) {
	err := a.Configuration.Unsubscribe(r.Context(), r.PathValue("store"), r.PathValue("id"))
	var ae *apierr.Error
	switch {
	case err == nil:
		body, _ := json.Marshal(unsubscribeResponse{OK: true})
		writeJSON(w, http.StatusOK, body)
	case errors.As(err, &ae) && ae.Kind == apierr.ConfigurationUnsubscribe:
		body, _ := json.Marshal(unsubscribeResponse{Message: ae.Message})
		writeJSON(w, ae.Kind.HTTP, body)
	default:
		apierr.WriteHTTP(w, err)
	}
}
