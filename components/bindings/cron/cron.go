// Package cron is the bindings.cron input binding: it sends an event to the
// app on a schedule, in Dapr's syntax (robfig/cron with an optional seconds
// field and descriptors such as "@every 15s", "@hourly", "@daily", plus a
// "CRON_TZ=Area/City " prefix).
//
// Each firing calls the handler synchronously from Read's goroutine; a
// firing that comes due while the previous event is still being handled is
// skipped rather than queued, so a slow app is never flooded. A handler
// error is logged and not retried: the next firing is the next event, as in
// Dapr.
package cron

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	robfig "github.com/robfig/cron/v3"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
)

// Binding is the cron input binding.
type Binding struct {
	log      *slog.Logger
	name     string
	spec     string
	schedule robfig.Schedule

	mu         sync.Mutex
	closed     bool
	cancelRead context.CancelFunc // ends the running Read
	readDone   chan struct{}      // closed when Read returns
}

var _ bindings.Input = (*Binding)(nil)

// parser accepts Dapr's schedule syntax.
var parser = robfig.NewParser(robfig.SecondOptional | robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init reads the required "schedule" metadata.
func (b *Binding) Init(_ context.Context, md components.Metadata) error {
	b.name = md.Name
	mdcheck.WarnUnknown(b.log, md, "schedule")
	spec, _ := md.Get("schedule")
	if spec == "" {
		return errors.New(`metadata "schedule" is required (for example "@every 15m" or "0 30 * * * *")`)
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return fmt.Errorf("metadata %q: invalid schedule %q: %w", "schedule", spec, err)
	}
	b.spec, b.schedule = spec, s
	return nil
}

// Read fires the schedule until ctx ends or the binding is closed.
func (b *Binding) Read(ctx context.Context, handler bindings.Handler) error {
	if b.schedule == nil {
		return errors.New("cron binding is not initialised")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("cron binding is closed")
	}
	if b.cancelRead != nil {
		b.mu.Unlock()
		return errors.New("cron binding is already being read")
	}
	b.cancelRead = cancel
	done := make(chan struct{})
	b.readDone = done
	b.mu.Unlock()
	defer close(done)
	loc := time.Local
	if ss, ok := b.schedule.(*robfig.SpecSchedule); ok && ss.Location != nil {
		loc = ss.Location
	}
	next := b.schedule.Next(time.Now())
	b.log.Debug("cron schedule started", "schedule", b.spec, "next", next)
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		fired := time.Now()
		_, err := handler(ctx, &bindings.Event{Metadata: map[string]string{
			"timeZone":    loc.String(),
			"readTimeUTC": fired.UTC().String(),
		}})
		if err != nil && ctx.Err() == nil {
			b.log.Warn("the app did not accept the cron event; it is not retried", "schedule", b.spec, "error", err)
		}
		next = b.schedule.Next(time.Now())
	}
}

// Close stops Read, cancelling an event being handled, and waits for Read
// to return. It is idempotent.
func (b *Binding) Close() error {
	b.mu.Lock()
	b.closed = true
	cancel, done := b.cancelRead, b.readDone
	b.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}
