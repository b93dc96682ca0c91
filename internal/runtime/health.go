package runtime

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/internal/apphealth"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
)

// health tracks the two readiness stages Dapr exposes: outbound (the APIs can
// serve) and full (components and the app are ready).
type health struct {
	mu       sync.RWMutex
	outbound bool
	appReady bool
	closing  bool
	// nudge wakes the app-port waiter early; health checks send to it.
	nudge chan struct{}
}

func newHealth() *health { return &health{nudge: make(chan struct{}, 1)} }

func (h *health) Outbound() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	switch {
	case h.closing:
		return errors.New("shutting down")
	case !h.outbound:
		return errors.New("components are initialising")
	}
	return nil
}

func (h *health) Ready() error {
	if err := h.Outbound(); err != nil {
		return err
	}
	h.mu.RLock()
	ready := h.appReady
	h.mu.RUnlock()
	if !ready {
		select {
		case h.nudge <- struct{}{}:
		default:
		}
		return errors.New("waiting for the app to listen on its port")
	}
	return nil
}

func (h *health) set(f func(h *health)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

// waitForApp returns once the app accepts TCP connections on addr:port, or
// ctx ends. It probes with exponential back-off (5 ms doubling to 500 ms) and
// re-probes at once when a health check is waiting, instead of dialling on a
// fixed short interval.
func waitForApp(ctx context.Context, addr string, port int, nudge <-chan struct{}) error {
	target := net.JoinHostPort(addr, strconv.Itoa(port))
	var d net.Dialer
	delay := 5 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", target)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-nudge:
			t.Stop()
		case <-t.C:
			delay = min(delay*2, 500*time.Millisecond)
		}
	}
}

// AppHealthKey is the extended metadata attribute that reports the app's
// health ("healthy" or "unhealthy") while health checks are on.
const AppHealthKey = "mecha.appHealth"

// setAppHealthDefaults applies daprd's rule: an interval, timeout or
// threshold below 1 takes the default.
func (o *Options) setAppHealthDefaults() {
	c := o.appHealthConfig()
	o.AppHealthCheckPath = o.appHealthPath()
	o.AppHealthProbeInterval, o.AppHealthProbeTimeout, o.AppHealthThreshold = c.Interval, c.Timeout, c.Threshold
}

func (o *Options) appHealthPath() string {
	p := cmp.Or(o.AppHealthCheckPath, apphealth.DefaultPath)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// appHealthConfig is the probes' configuration with defaults applied.
func (o *Options) appHealthConfig() apphealth.Config {
	c := apphealth.Config{Interval: o.AppHealthProbeInterval, Timeout: o.AppHealthProbeTimeout, Threshold: o.AppHealthThreshold}
	if c.Interval <= 0 {
		c.Interval = apphealth.DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = apphealth.DefaultTimeout
	}
	if c.Threshold < 1 {
		c.Threshold = apphealth.DefaultThreshold
	}
	return c
}

// validateAppHealth rejects a probe timeout longer than the interval, as
// daprd does (whether or not checks are enabled).
func (o *Options) validateAppHealth() error {
	if c := o.appHealthConfig(); c.Timeout > c.Interval {
		return fmt.Errorf("--app-health-probe-timeout (%v) must not be longer than --app-health-probe-interval (%v)", c.Timeout, c.Interval)
	}
	return nil
}

// appHealthMetadata fills the health properties the metadata API reports,
// in daprd's formats (durations as Go strings, "5s", "500ms"); the path
// only for HTTP apps.
func appHealthMetadata(o Options, app *metadata.AppConnection) {
	if !o.AppHealthCheck {
		return
	}
	app.HealthProbeInterval = o.AppHealthProbeInterval.String()
	app.HealthProbeTimeout = o.AppHealthProbeTimeout.String()
	app.HealthThreshold = o.AppHealthThreshold
	switch o.AppProtocol {
	case "http", "https", "h2c":
		app.HealthCheckPath = o.AppHealthCheckPath
	}
}

// watchApp waits for the app in the background. The app is ready (Ready,
// /v1.0/healthz, the channel's Ready) once its port accepts connections or,
// with health checks, once it first passes a probe, whichever comes first.
// With health checks it also runs the prober, which tells the app channel
// whether the app may be given work. Both goroutines belong to r.bg and stop
// with ctx.
func (r *Runtime) watchApp(ctx context.Context) {
	waitCtx, stopWaiting := context.WithCancel(ctx)
	var once sync.Once
	ready := func(msg string) {
		once.Do(func() {
			stopWaiting()
			r.health.set(func(h *health) { h.appReady = true })
			close(r.appReady)
			r.log.Info(msg, "port", r.opts.AppPort)
		})
	}
	var prober *apphealth.Prober
	if r.opts.AppHealthCheck {
		r.meta.SetExtended(AppHealthKey, "unhealthy")
		p, err := apphealth.New(r.opts.appHealthConfig(), r.app.HealthProbe, func(st apphealth.Status) {
			r.app.SetHealthy(st.Healthy)
			if st.Healthy {
				r.meta.SetExtended(AppHealthKey, "healthy")
				ready("app passed its health check; sidecar ready")
			} else {
				r.meta.SetExtended(AppHealthKey, "unhealthy")
			}
		}, r.log.With(slog.String("scope", "mecha.runtime.apphealth")))
		if err != nil {
			// Options.Validate rules this out.
			r.log.Error("app health checks not started", "error", err)
		} else {
			prober = p
			r.bg.Go(func() { _ = p.Run(ctx) })
		}
	}
	r.bg.Go(func() {
		defer stopWaiting()
		r.log.Info("waiting for the app to listen", "port", r.opts.AppPort)
		if err := waitForApp(waitCtx, r.opts.AppChannelAddress, r.opts.AppPort, r.health.nudge); err != nil {
			return
		}
		ready("app is listening; sidecar ready")
		if prober != nil {
			// Probe at once rather than at the next tick, as daprd does
			// once the port opens.
			prober.Enqueue()
		}
	})
}
