package resiliency

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

// Policy is the resiliency of one call target: an optional timeout per
// attempt, an optional retry policy and up to two circuit breakers (an
// actor with circuitBreakerScope "both" has a breaker for its type and one
// for its id). The nil *Policy is valid: it runs the operation once, as
// it is, and costs nothing; lookups return nil when no policy applies.
//
// The three compose as in daprd: each attempt goes through the breakers
// and runs under the timeout; the retry policy repeats attempts that
// failed with a retryable error.
type Policy struct {
	labels  Labels
	timeout time.Duration
	retry   *config.RetrySpec
	cbs     []*breaker
	rec     Recorder
	log     *slog.Logger
	now     func() time.Time
}

// Timeout is the per-attempt timeout (0: none).
func (p *Policy) Timeout() time.Duration {
	if p == nil {
		return 0
	}
	return p.timeout
}

// HasRetries reports whether a failed attempt may be tried again: callers
// whose request is a stream use it to decide whether to buffer the body.
func (p *Policy) HasRetries() bool {
	return p != nil && p.retry != nil && p.retry.MaxRetries != 0
}

// HasBreaker reports whether calls go through a circuit breaker.
func (p *Policy) HasBreaker() bool { return p != nil && len(p.cbs) > 0 }

// Target is the metrics target of the policy, e.g. "app_orders" or
// "Statestore_statestore".
func (p *Policy) Target() string {
	if p == nil {
		return ""
	}
	return p.labels.Target
}

// Run runs op under the policy and returns its final error. Errors that op
// marks with Permanent or Handled are returned unmarked.
func (p *Policy) Run(ctx context.Context, op func(ctx context.Context) error) error {
	release, err := p.Do(ctx, op)
	release()
	return err
}

// Do is Run for an operation whose result outlives it, such as a response
// body that is streamed to the caller after op returned: the context of
// the successful attempt (and its timeout) stays live until release is
// called, so reading the result is still bounded by the timeout. release
// is never nil; call it once the result is consumed (also on error).
func (p *Policy) Do(ctx context.Context, op func(ctx context.Context) error) (release func(), err error) {
	if p == nil {
		return noop, op(ctx)
	}
	p.executed()
	var (
		bo        backoff
		started   bool
		activated bool
	)
	for attempt := 1; ; attempt++ {
		release, err := p.attempt(withAttempt(ctx, attempt), op)
		if err == nil {
			if attempt > 1 {
				p.log.Info("recovered processing operation", "target", p.labels.Target, "attempts", attempt)
			}
			return release, nil
		}
		if p.retry == nil || ctx.Err() != nil || !retryable(err, p.retry) {
			return noop, unmark(err)
		}
		if !started {
			bo, started = newBackoff(p.retry, p.now()), true
		}
		wait, ok := bo.wait(p.now())
		if !ok {
			return noop, unmark(err)
		}
		if !activated {
			activated = true
			p.activated(PolicyRetry, "")
		}
		p.log.Warn("error processing operation; retrying", "target", p.labels.Target, "attempt", attempt, "retry_in", wait, "error", err)
		if sleep(ctx, wait) != nil {
			return noop, unmark(err)
		}
	}
}

// attempt runs op once through the breakers and under the timeout.
func (p *Policy) attempt(ctx context.Context, op func(ctx context.Context) error) (func(), error) {
	var gens [2]uint64
	for i, b := range p.cbs {
		g, err := b.allow()
		if err != nil {
			for j := range i {
				p.cbs[j].cancel(gens[j])
			}
			return noop, err
		}
		gens[i] = g
	}
	actx, cancel := ctx, context.CancelFunc(noop)
	if p.timeout > 0 {
		actx, cancel = context.WithTimeout(ctx, p.timeout)
	}
	err := op(actx)
	if err != nil && p.timeout > 0 && ctx.Err() == nil && timedOut(actx) {
		// The attempt ran out of time: whatever op made of it, the
		// caller sees daprd's timeout error.
		p.log.Debug("operation timed out", "target", p.labels.Target, "timeout", p.timeout, "error", err)
		p.activated(PolicyTimeout, "")
		err = context.DeadlineExceeded
	}
	for i, b := range p.cbs {
		if ctx.Err() != nil {
			// The caller gave up: that says nothing about the target.
			b.cancel(gens[i])
			continue
		}
		if terr := b.done(gens[i], err == nil || isHandled(err)); terr != nil {
			p.log.Warn("circuit breaker trip expression failed; the breaker stays closed", "breaker", b.name, "error", terr)
		}
	}
	if err != nil {
		cancel()
		return noop, err
	}
	return cancel, nil
}

func (p *Policy) executed() {
	if p.rec == nil {
		return
	}
	l := p.labels
	if p.timeout > 0 {
		l.Policy = PolicyTimeout
		p.rec.PolicyExecuted(l)
	}
	if p.retry != nil {
		l.Policy = PolicyRetry
		p.rec.PolicyExecuted(l)
	}
	for _, b := range p.cbs {
		l.Policy, l.Status = PolicyCircuitBreaker, string(b.State())
		p.rec.PolicyExecuted(l)
	}
}

func (p *Policy) activated(kind, status string) {
	if p.rec == nil {
		return
	}
	l := p.labels
	l.Policy, l.Status = kind, status
	p.rec.PolicyActivated(l)
}

// timedOut reports whether the attempt's deadline passed. Its context may
// not say so yet: a callee that received the deadline (gRPC's
// grpc-timeout) can answer DeadlineExceeded just before the local timer
// fires.
func timedOut(actx context.Context) bool {
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := actx.Deadline()
	return ok && !time.Now().Before(d)
}

func noop() {}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type attemptKey struct{}

func withAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// Attempt is the number of the attempt (1, 2, ...) whose context ctx is,
// or 0 outside a policy.
func Attempt(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

// marked is an operation's error with a verdict for the policy.
type marked struct {
	err error
	// handled: the target did its job (the error is the caller's, e.g. an
	// ETag mismatch): a success for the breakers.
	handled bool
}

func (e *marked) Error() string { return e.err.Error() }
func (e *marked) Unwrap() error { return e.err }

// Permanent marks an operation's error as not worth retrying (part of a
// streamed body is gone, the request is invalid). It still counts as a
// failure for the circuit breakers.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err}
}

// Handled marks an error that is the caller's, not the target's: the call
// reached the target, which answered correctly (an ETag mismatch, a
// refused lock). It is not retried and counts as a success for the
// circuit breakers.
func Handled(err error) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, handled: true}
}

func isHandled(err error) bool {
	var m *marked
	return errors.As(err, &m) && m.handled
}

func unmark(err error) error {
	if m, ok := err.(*marked); ok {
		return m.err
	}
	return err
}

// StatusError is a failure answer of the target: an HTTP status outside
// 200-399 or a gRPC code other than OK. Retry policies with matching
// status codes retry only the codes they list.
type StatusError struct {
	Code int
	// GRPC says Code is a gRPC code, not an HTTP status.
	GRPC bool
}

func (e *StatusError) Error() string {
	if e.GRPC {
		return "the target answered with gRPC code " + strconv.Itoa(e.Code)
	}
	return "the target answered with HTTP status " + strconv.Itoa(e.Code)
}

// retryable decides whether a failed attempt is tried again.
func retryable(err error, r *config.RetrySpec) bool {
	var m *marked
	if errors.As(err, &m) {
		return false
	}
	if errors.Is(err, ErrBreakerOpen) || errors.Is(err, ErrTooManyRequests) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		codes := r.HTTPStatusCodes
		if se.GRPC {
			codes = r.GRPCStatusCodes
		}
		if codes == nil {
			return true
		}
		for _, c := range codes {
			if c.Contains(se.Code) {
				return true
			}
		}
		return false
	}
	return true
}
