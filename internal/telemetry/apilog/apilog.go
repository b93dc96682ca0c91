// Package apilog logs one line per gRPC API call (--enable-api-logging),
// the gRPC counterpart of the HTTP API's request log: the method, the
// status code and the duration, with type "request". Nothing else is
// logged: no request or response messages (they carry state values and
// secrets) and no metadata (dapr-api-token is metadata).
package apilog

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/logging"
)

// ServerOption logs every call the server completes, unary or stream
// (proxied invocation included), at info level on log; when enabled is
// false it is a no-op option.
func ServerOption(log *slog.Logger, enabled bool) grpc.ServerOption {
	if !enabled || log == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(&handler{log: log})
}

type handler struct{ log *slog.Logger }

type methodKey struct{}

func (h *handler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (h *handler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok {
		return
	}
	method, _ := ctx.Value(methodKey{}).(string)
	code := status.Code(end.Error)
	h.log.LogAttrs(ctx, slog.LevelInfo, "gRPC API called",
		slog.String(logging.KeyType, logging.TypeRequest),
		slog.String("method", method),
		slog.Int("code", int(code)),
		slog.String("status", code.String()),
		slog.Duration("duration", end.EndTime.Sub(end.BeginTime).Round(time.Microsecond)),
	)
}

func (h *handler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (h *handler) HandleConn(context.Context, stats.ConnStats) {}
