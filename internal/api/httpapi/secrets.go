package httpapi

import "net/http"

// secretsRoutes registers the secrets API.
func (a *api) secretsRoutes(mux *http.ServeMux) {}
