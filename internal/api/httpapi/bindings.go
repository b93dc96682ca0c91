package httpapi

import "net/http"

// bindingsRoutes registers the bindings API.
func (a *api) bindingsRoutes(mux *http.ServeMux) {}
