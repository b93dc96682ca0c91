package httpapi

import "net/http"

// lockRoutes registers the lock API.
func (a *api) lockRoutes(mux *http.ServeMux) {}
