// Package controlplane is the process behind `mecha control-plane`: a host
// for the services Mecha's sidecars rely on besides their components. Each
// service is a Part, started in order and stopped in reverse; the host adds
// one /healthz endpoint over all of them.
//
// The parts are the embedded NATS JetStream broker (controlplane/broker)
// that self-hosted Mecha uses as its default pub/sub, actor placement
// (internal/placement) and the certificate authority (internal/sentry):
// parts of one process, each switchable, rather than processes of their own
// as Dapr's placement and sentry are: one process to start, find and stop
// on a developer's machine.
package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Part is one service the control plane hosts.
type Part interface {
	// Name names the part in logs and in /healthz ("broker").
	Name() string
	// Start starts the part and returns once it serves, or fails; a part
	// whose Start failed is not stopped.
	Start(ctx context.Context) error
	// Healthy returns nil while the part serves, else why not.
	Healthy() error
	// Stop stops the part gracefully, giving up when ctx ends.
	Stop(ctx context.Context) error
}

// Options configure a Host.
type Options struct {
	// Parts are started in this order and stopped in reverse.
	Parts []Part
	// HealthzAddr is where /healthz listens, e.g. "127.0.0.1:8080"; port 0
	// picks a free one (see Host.HealthzAddr); "" serves no endpoint.
	HealthzAddr string
	Logger      *slog.Logger
}

// Host runs the parts.
type Host struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	started []Part
	ln      net.Listener
	srv     *http.Server
	served  chan struct{} // closed when the health server's goroutine returns
}

// New returns a host that has started nothing.
func New(opts Options) *Host {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{opts: opts, log: log}
}

// Start starts every part, then the health endpoint. On error, what was
// started is stopped again.
func (h *Host) Start(ctx context.Context) (err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started != nil {
		return errors.New("control plane: started twice")
	}
	h.started = []Part{}
	defer func() {
		if err != nil {
			h.stopLocked(context.WithoutCancel(ctx))
		}
	}()
	for _, p := range h.opts.Parts {
		start := time.Now()
		if err := p.Start(ctx); err != nil {
			return fmt.Errorf("control plane: starting %s: %w", p.Name(), err)
		}
		h.started = append(h.started, p)
		h.log.Info("part started", "part", p.Name(), "elapsed", time.Since(start).Round(time.Millisecond))
	}
	if h.opts.HealthzAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", h.opts.HealthzAddr)
	if err != nil {
		return fmt.Errorf("control plane: health endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	// The goroutine keeps its own references: Stop clears the fields.
	srv, served := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, make(chan struct{})
	h.ln, h.srv, h.served = ln, srv, served
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("health endpoint failed", "error", err)
		}
	}()
	h.log.Info("health endpoint listening", "addr", ln.Addr().String())
	return nil
}

// HealthzAddr is the address /healthz listens on, "" when it does not.
func (h *Host) HealthzAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return ""
	}
	return h.ln.Addr().String()
}

// Health is the body of /healthz.
type Health struct {
	// Status is "ok" when every part is healthy, else "unhealthy".
	Status string `json:"status"`
	// PID is the control plane's process id, which tells a client that
	// found the address in a state file that it reached the process the
	// file names.
	PID int `json:"pid"`
	// Parts maps each part to "ok" or why it is not.
	Parts map[string]string `json:"parts"`
}

// Health reports the parts' health.
func (h *Host) Health() Health {
	h.mu.Lock()
	parts := append([]Part(nil), h.started...)
	h.mu.Unlock()
	out := Health{Status: "ok", PID: os.Getpid(), Parts: map[string]string{}}
	if len(parts) < len(h.opts.Parts) {
		out.Status = "unhealthy"
	}
	for _, p := range h.opts.Parts {
		out.Parts[p.Name()] = "not started"
	}
	for _, p := range parts {
		if err := p.Healthy(); err != nil {
			out.Parts[p.Name()] = err.Error()
			out.Status = "unhealthy"
			continue
		}
		out.Parts[p.Name()] = "ok"
	}
	return out
}

// healthz answers 200 with Health when every part is healthy, else 503.
func (h *Host) healthz(w http.ResponseWriter, _ *http.Request) {
	hl := h.Health()
	w.Header().Set("Content-Type", "application/json")
	if hl.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(hl)
}

// Stop stops the health endpoint and then the parts, in reverse order;
// each gets what is left of ctx. It returns the parts' errors.
func (h *Host) Stop(ctx context.Context) error {
	h.mu.Lock()
	srv, served := h.srv, h.served
	h.srv, h.ln = nil, nil
	h.mu.Unlock()
	// Outside the lock: a /healthz call in flight takes it.
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-served
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopLocked(ctx)
}

// stopLocked stops the started parts, in reverse order.
func (h *Host) stopLocked(ctx context.Context) error {
	var errs []error
	for i := len(h.started) - 1; i >= 0; i-- {
		p := h.started[i]
		if err := p.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", p.Name(), err))
			continue
		}
		h.log.Info("part stopped", "part", p.Name())
	}
	h.started = h.started[:0]
	return errors.Join(errs...)
}
