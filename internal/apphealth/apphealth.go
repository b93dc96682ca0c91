// Package apphealth probes the app's health on an interval, as daprd does
// with --enable-app-health-check, and reports when the app enters or leaves
// the healthy state. The sidecar uses the reports to stop delivering work to
// an app that cannot take it: invocations to it fail fast, input bindings
// and configuration updates wait.
//
// The state machine is daprd's: the app starts unhealthy (nothing is known
// yet), one successful probe makes it healthy, and Threshold consecutive
// failed probes (a probe that outlives Timeout is a failure) make it
// unhealthy again. Only transitions are reported.
//
// The probe itself is a function (internal/channel's HealthProbe: GET
// /healthz for HTTP apps, AppCallbackHealthCheck.HealthCheck for gRPC
// apps), so this package knows no transport.
package apphealth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Defaults of Config, daprd's.
const (
	DefaultPath      = "/healthz"
	DefaultInterval  = 5 * time.Second
	DefaultTimeout   = 500 * time.Millisecond
	DefaultThreshold = 3
)

// Config tunes the probes.
type Config struct {
	// Interval is the time between two probes.
	Interval time.Duration
	// Timeout bounds one probe; a probe still running then has failed.
	Timeout time.Duration
	// Threshold is the number of consecutive failed probes after which a
	// healthy app is reported unhealthy.
	Threshold int
}

// Validate reports a configuration the prober cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("app health probe interval %v must be positive", c.Interval))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("app health probe timeout %v must be positive", c.Timeout))
	}
	if c.Timeout > c.Interval {
		errs = append(errs, fmt.Errorf("app health probe timeout %v must not be longer than the probe interval %v", c.Timeout, c.Interval))
	}
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("app health threshold %d must be at least 1", c.Threshold))
	}
	return errors.Join(errs...)
}

// Probe checks the app once; nil means healthy, an error says why not. It
// must return when ctx ends.
type Probe func(ctx context.Context) error

// Status is the app's health as last decided.
type Status struct {
	Healthy bool
	// Reason is why the last probe failed ("" after a success).
	Reason string
	// Failures counts the consecutive failed probes.
	Failures int
}

// Prober runs the probes. Create it with New, run it with Run; Status and
// Enqueue are safe to call from any goroutine.
type Prober struct {
	cfg      Config
	probe    Probe
	onChange func(Status)
	log      *slog.Logger
	// queue holds at most one pending probe request.
	queue chan struct{}

	mu sync.Mutex
	st Status
}

// New returns a prober that reports every transition to onChange (called
// on the probing goroutine, so it must not block for long; may be nil).
// The app starts unhealthy.
func New(cfg Config, probe Probe, onChange func(Status), log *slog.Logger) (*Prober, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if probe == nil {
		return nil, errors.New("app health: no probe function")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Status) {}
	}
	return &Prober{
		cfg: cfg, probe: probe, onChange: onChange, log: log,
		queue: make(chan struct{}, 1),
		st:    Status{Reason: "the app has not been probed yet", Failures: cfg.Threshold},
	}, nil
}

// Status returns the current status.
func (p *Prober) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Enqueue asks for a probe now, without waiting for the next tick; requests
// made while one is pending are merged.
func (p *Prober) Enqueue() {
	select {
	case p.queue <- struct{}{}:
	default:
	}
}

// Run probes the app at once, then every Interval and whenever Enqueue
// asks, one probe at a time, until ctx ends. It returns ctx's error.
func (p *Prober) Run(ctx context.Context) error {
	p.log.Info("app health probes starting", "interval", p.cfg.Interval, "timeout", p.cfg.Timeout, "threshold", p.cfg.Threshold)
	defer p.log.Info("app health probes stopped")
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	p.Enqueue()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-p.queue:
		}
		p.once(ctx)
	}
}

// once runs one probe and records its result.
func (p *Prober) once(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	err := p.probe(pctx)
	if err == nil && pctx.Err() != nil {
		// A probe that ignored its deadline still took too long.
		err = pctx.Err()
	}
	cancel()
	if ctx.Err() != nil {
		return // stopping: the result means nothing
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the probe did not answer within %v", p.cfg.Timeout)
	}
	p.record(err)
}

// record applies one probe result to the state machine and reports a
// transition.
func (p *Prober) record(err error) {
	p.mu.Lock()
	prev := p.st
	if err == nil {
		p.st = Status{Healthy: true}
	} else {
		// Saturate rather than overflow on an app that stays down.
		p.st = Status{Healthy: prev.Healthy, Reason: err.Error(), Failures: min(prev.Failures+1, p.cfg.Threshold+1)}
		if p.st.Failures >= p.cfg.Threshold {
			p.st.Healthy = false
		}
	}
	st := p.st
	p.mu.Unlock()

	switch {
	case st.Healthy && !prev.Healthy:
		p.log.Info("app entered healthy status")
		p.onChange(st)
	case !st.Healthy && prev.Healthy:
		p.log.Warn("app entered unhealthy status", "reason", st.Reason, "failures", st.Failures)
		p.onChange(st)
	case err != nil:
		p.log.Debug("app health probe failed", "reason", st.Reason, "failures", st.Failures, "healthy", st.Healthy)
	}
}
