package runtime

import (
	"context"
	"log/slog"
	"time"

	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// tracingShutdown bounds the last export at shutdown: queued spans are
// worth a moment, an unreachable collector is not worth more.
const tracingShutdown = 3 * time.Second

// initTracing creates the tracer the Configuration's spec.tracing asks
// for (nil: tracing off).
func (r *Runtime) initTracing(ctx context.Context) error {
	t, err := tracing.New(ctx, r.cfg.Spec.Tracing, r.opts.AppID, r.log.With(slog.String("scope", "mecha.runtime.tracing")))
	if err != nil {
		return err
	}
	r.tracing = t
	return nil
}

// closeTracing exports the spans still queued, once nothing makes new
// ones; it gives up after tracingShutdown.
func (r *Runtime) closeTracing() error {
	ctx, cancel := context.WithTimeout(context.Background(), tracingShutdown)
	defer cancel()
	return r.tracing.Shutdown(ctx)
}
