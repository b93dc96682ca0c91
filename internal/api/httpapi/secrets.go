package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/secrets"
)

// secretsRoutes registers the secrets API. The bulk route is the more
// specific pattern, so, as in daprd, a secret named "bulk" cannot be read
// on its own over HTTP.
func (a *api) secretsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1.0/secrets/{store}/bulk", a.bulkGetSecret)
	mux.HandleFunc("GET /v1.0/secrets/{store}/{key}", a.getSecret)
}

// getSecret answers the secret's key/values as a JSON object, or 204 when
// the store returned no data.
func (a *api) getSecret(w http.ResponseWriter, r *http.Request) {
	data, err := a.Secrets.Get(r.Context(), secrets.GetRequest{
		Store:    r.PathValue("store"),
		Name:     r.PathValue("key"),
		Metadata: requestMetadata(query(r)),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if data == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a.writeSecrets(w, data)
}

// bulkGetSecret answers {"secretName": {"key": "value"}} for every secret
// the scopes allow, or 204 when the store returned nothing at all.
func (a *api) bulkGetSecret(w http.ResponseWriter, r *http.Request) {
	data, err := a.Secrets.BulkGet(r.Context(), secrets.BulkGetRequest{
		Store:    r.PathValue("store"),
		Metadata: requestMetadata(query(r)),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	if data == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a.writeSecrets(w, data)
}

func (a *api) writeSecrets(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		apierr.WriteHTTP(w, apierr.Internal.Wrap(err, "encoding the secrets"))
		return
	}
	writeJSON(w, http.StatusOK, b)
}
