package runtime

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
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
