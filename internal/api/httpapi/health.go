package httpapi

import (
	"net/http"

	"github.com/mecha-dev/mecha/internal/apierr"
)

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	if q := r.URL.Query(); q.Has("appid") && q.Get("appid") != a.AppID {
		apierr.WriteHTTP(w, apierr.HealthAppIDNotMatch.New("dapr app-id does not match"))
		return
	}
	if err := a.Health.Ready(); err != nil {
		apierr.WriteHTTP(w, apierr.HealthNotReady.New("dapr is not ready: %v", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) healthzOutbound(w http.ResponseWriter, r *http.Request) {
	if err := a.Health.Outbound(); err != nil {
		apierr.WriteHTTP(w, apierr.OutboundHealthNotReady.New("dapr outbound is not ready: %v", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) shutdown(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusNoContent)
	if a.Shutdown != nil {
		a.Shutdown()
	}
}
