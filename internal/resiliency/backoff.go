package resiliency

import (
	"math/rand/v2"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
)

// Exponential back-off parameters, daprd's (its back-off library's
// defaults, which a Resiliency resource cannot change).
const (
	expInitialInterval = 500 * time.Millisecond
	expMultiplier      = 1.5
	expRandomization   = 0.5
	// expMaxElapsed ends exponential retries, even unlimited ones, once
	// this much time has passed since the first attempt, as in daprd.
	expMaxElapsed = 15 * time.Minute
)

// backoff is the schedule of one call's retries.
type backoff struct {
	spec    *config.RetrySpec
	retries int
	next    time.Duration // exponential: the interval before randomization
	start   time.Time
}

func newBackoff(spec *config.RetrySpec, now time.Time) backoff {
	return backoff{spec: spec, next: expInitialInterval, start: now}
}

// wait returns how long to wait before the next attempt, or false when
// the policy allows no more retries.
func (b *backoff) wait(now time.Time) (time.Duration, bool) {
	if b.spec.MaxRetries >= 0 && b.retries >= b.spec.MaxRetries {
		return 0, false
	}
	b.retries++
	if b.spec.Policy != config.RetryExponential {
		return b.spec.Duration, true
	}
	if now.Sub(b.start) >= expMaxElapsed {
		return 0, false
	}
	cur := min(b.next, b.spec.MaxInterval)
	// A random value in [cur*(1-r), cur*(1+r)], capped at maxInterval:
	// retries of many callers spread out instead of arriving together.
	delta := expRandomization * float64(cur)
	d := time.Duration(float64(cur) - delta + rand.Float64()*(2*delta+1))
	d = min(d, b.spec.MaxInterval)
	if float64(b.next) >= float64(b.spec.MaxInterval)/expMultiplier {
		b.next = b.spec.MaxInterval
	} else {
		b.next = time.Duration(float64(b.next) * expMultiplier)
	}
	return d, true
}
