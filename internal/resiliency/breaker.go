package resiliency

import (
	"errors"
	"sync"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/resiliency/trip"
)

// Errors of a breaker that refuses a call, with daprd's messages (its
// circuit breaker library's). Calls they refuse never reach the target
// and are not retried.
var (
	ErrBreakerOpen     = errors.New("circuit breaker is open")
	ErrTooManyRequests = errors.New("too many requests")
)

// BreakerState is a circuit breaker's state, spelt as daprd's metrics do.
type BreakerState string

// The states of a breaker.
const (
	StateClosed   BreakerState = "closed"
	StateHalfOpen BreakerState = "half-open"
	StateOpen     BreakerState = "open"
)

// breaker is one circuit breaker instance (a policy is a template; each
// target, or each app method or actor, gets its own instance).
//
// Closed, it lets every call through and counts outcomes; after a failure
// it evaluates the trip expression and opens when it is true. The counts
// are cleared every interval (when one is set). Open, it refuses calls for
// timeout, then half-opens: up to maxRequests calls go through; that many
// successes in a row close it, any failure opens it again. Outcomes of
// calls that started in an earlier state (an older generation) are
// ignored, so a slow call cannot undo a later decision.
type breaker struct {
	name     string
	spec     config.CircuitBreakerSpec
	now      func() time.Time
	onChange func(from, to BreakerState)

	mu     sync.Mutex
	state  BreakerState
	gen    uint64
	counts trip.Counts
	// expiry is when the current generation ends: the next count reset
	// while closed (zero: never), the end of the open period.
	expiry time.Time
}

func newBreaker(name string, spec config.CircuitBreakerSpec, now func() time.Time, onChange func(from, to BreakerState)) *breaker {
	if spec.MaxRequests == 0 {
		spec.MaxRequests = config.DefaultBreakerMaxRequest
	}
	if spec.Timeout <= 0 {
		spec.Timeout = config.DefaultBreakerTimeout
	}
	if spec.Trip == nil {
		spec.Trip = trip.MustCompile(trip.Default)
	}
	b := &breaker{name: name, spec: spec, now: now, onChange: onChange, state: StateClosed}
	b.newGeneration(now())
	return b
}

// State is the current state (an open breaker whose timeout passed reads
// half-open).
func (b *breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresh(b.now())
	return b.state
}

// allow admits a call, returning its generation, or refuses it.
func (b *breaker) allow() (uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresh(b.now())
	switch {
	case b.state == StateOpen:
		return 0, ErrBreakerOpen
	case b.state == StateHalfOpen && b.counts.Requests >= b.spec.MaxRequests:
		return 0, ErrTooManyRequests
	}
	b.counts.Requests++
	return b.gen, nil
}

// done records the outcome of a call admitted in generation gen. It
// returns an error when the trip expression could not be evaluated.
func (b *breaker) done(gen uint64, success bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.refresh(now)
	if gen != b.gen {
		return nil
	}
	c := &b.counts
	if success {
		c.TotalSuccesses++
		c.ConsecutiveSuccesses++
		c.ConsecutiveFailures = 0
		if b.state == StateHalfOpen && c.ConsecutiveSuccesses >= b.spec.MaxRequests {
			b.setState(StateClosed, now)
		}
		return nil
	}
	c.TotalFailures++
	c.ConsecutiveFailures++
	c.ConsecutiveSuccesses = 0
	switch b.state {
	case StateHalfOpen:
		b.setState(StateOpen, now)
	case StateClosed:
		open, err := b.spec.Trip.Eval(*c)
		if open {
			b.setState(StateOpen, now)
		}
		return err
	}
	return nil
}

// cancel withdraws a call admitted in generation gen that ends without an
// outcome (the caller gave up, or another breaker refused it), so that a
// half-open breaker does not wait for it.
func (b *breaker) cancel(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if gen == b.gen && b.counts.Requests > 0 {
		b.counts.Requests--
	}
}

// refresh moves to the next generation when the current one expired: a
// closed breaker clears its counts, an open one half-opens.
func (b *breaker) refresh(now time.Time) {
	switch b.state {
	case StateClosed:
		if !b.expiry.IsZero() && !now.Before(b.expiry) {
			b.newGeneration(now)
		}
	case StateOpen:
		if !now.Before(b.expiry) {
			b.setState(StateHalfOpen, now)
		}
	}
}

func (b *breaker) setState(s BreakerState, now time.Time) {
	if b.state == s {
		return
	}
	prev := b.state
	b.state = s
	b.newGeneration(now)
	if b.onChange != nil {
		b.onChange(prev, s)
	}
}

func (b *breaker) newGeneration(now time.Time) {
	b.gen++
	b.counts = trip.Counts{}
	switch b.state {
	case StateClosed:
		b.expiry = time.Time{}
		if b.spec.Interval > 0 {
			b.expiry = now.Add(b.spec.Interval)
		}
	case StateOpen:
		b.expiry = now.Add(b.spec.Timeout)
	default:
		b.expiry = time.Time{}
	}
}
