package httpapi

import "net/http"

// configurationRoutes registers the configuration API.
func (a *api) configurationRoutes(mux *http.ServeMux) {}
