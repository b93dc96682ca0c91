//go:build !linux

package bench

import (
	"context"
	"time"
)

// pacer sleeps until due times with the runtime's timers, then spins for
// the last spin of each wait (see pace_linux.go for the precise version).
type pacer struct{ spin time.Duration }

func newPacer(spin time.Duration) *pacer { return &pacer{spin: spin} }

// sleepUntil returns true at t or just after it, or false when ctx ends
// first.
func (p *pacer) sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t) - p.spin; d > 0 {
		tm := time.NewTimer(d)
		select {
		case <-ctx.Done():
			tm.Stop()
			return false
		case <-tm.C:
		}
	}
	for time.Now().Before(t) {
	}
	return ctx.Err() == nil
}
