package channel

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// AppUnhealthyMessage is daprd's messages.ErrAppUnhealthy: the error
// message of a call refused because the app failed its health checks.
const AppUnhealthyMessage = "app is not in a healthy state"

// ErrAppUnhealthy is Invoke's answer while the app is unhealthy: gRPC
// Internal, as daprd's app channel.
var ErrAppUnhealthy = status.Error(codes.Internal, AppUnhealthyMessage)

// healthGate tracks the app's health as the health checks report it. Without
// health checks the app is always healthy.
type healthGate struct {
	mu sync.Mutex
	// healthy is closed while the app is healthy and replaced by an open
	// channel when it turns unhealthy.
	healthy chan struct{}
}

func newHealthGate(checked bool) *healthGate {
	g := &healthGate{healthy: make(chan struct{})}
	if !checked {
		close(g.healthy)
	}
	return g
}

func (g *healthGate) set(healthy bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.healthy:
		if !healthy {
			g.healthy = make(chan struct{})
		}
	default:
		if healthy {
			close(g.healthy)
		}
	}
}

// wait returns a channel closed once the app is healthy.
func (g *healthGate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.healthy
}

// SetHealthy records the health checks' verdict. Without health checks
// (Options.HealthCheck false) the app starts healthy and nothing calls
// this.
func (a *App) SetHealthy(healthy bool) { a.health.set(healthy) }

// Healthy reports whether the app may be given work: always true without
// health checks; with them, true after a successful probe until Threshold
// probes in a row fail.
func (a *App) Healthy() bool {
	select {
	case <-a.health.wait():
		return true
	default:
		return false
	}
}

// WaitHealthy blocks until the app is healthy or ctx ends.
func (a *App) WaitHealthy(ctx context.Context) error {
	select {
	case <-a.health.wait():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HealthChecked reports whether the app's health is probed.
func (a *App) HealthChecked() bool { return a.healthChecked }

// HealthProbe checks the app once, as daprd's probes do: an HTTP app must
// answer GET {HealthCheckPath} with a 2xx status; a gRPC app must answer
// AppCallbackHealthCheck.HealthCheck without error. nil means healthy. The
// probe bypasses MaxConcurrency, so that a busy app is not taken for a
// dead one.
func (a *App) HealthProbe(ctx context.Context) error {
	if a.GRPC != nil {
		if _, err := a.GRPC.Health.HealthCheck(ctx, &emptypb.Empty{}); err != nil {
			return fmt.Errorf("health check failed: %w", err)
		}
		return nil
	}
	return a.HTTP.probe(ctx, a.healthPath)
}

func (h *HTTP) probe(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path, nil)
	if err != nil {
		return fmt.Errorf("health check request: %w", err)
	}
	resp, err := h.send(req)
	if err != nil {
		return fmt.Errorf("network error: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("health check failed with status code: %d", resp.StatusCode)
	}
	return nil
}
