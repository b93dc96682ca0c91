package runtime

import (
	"log/slog"

	"github.com/mecha-dev/mecha/internal/api/grpcproxy"
)

// initProxy creates the transparent gRPC proxy: it resolves and balances
// through the invocation block, reaches other sidecars over the
// invocation client's pooled connections and this app over the app
// channel's gRPC connection. Call it after initInvoke.
func (r *Runtime) initProxy() {
	o := grpcproxy.Options{
		AppID:          r.opts.AppID,
		Router:         r.invoke,
		Remote:         r.invokeClient,
		MaxMessageSize: int(r.opts.MaxBodySize),
		Logger:         r.log.With(slog.String("scope", "mecha.runtime.grpcproxy")),
	}
	if r.app != nil {
		o.AppProtocol = r.opts.AppProtocol
		if r.app.GRPC != nil {
			o.App = r.app.GRPC.Conn()
		}
	}
	r.proxy = grpcproxy.New(o)
}
