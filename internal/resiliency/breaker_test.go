package resiliency

import (
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/resiliency/trip"
)

// clock is a manual clock for breakers and back-offs.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type transition struct{ from, to BreakerState }

func testBreaker(t *testing.T, spec config.CircuitBreakerSpec) (*breaker, *clock, *[]transition) {
	t.Helper()
	clk := newClock()
	var changes []transition
	b := newBreaker("cb-test", spec, clk.Now, func(from, to BreakerState) { changes = append(changes, transition{from, to}) })
	return b, clk, &changes
}

// call runs one call through b with the given outcome; it reports the
// breaker's refusal, if any.
func call(t *testing.T, b *breaker, success bool) error {
	t.Helper()
	gen, err := b.allow()
	if err != nil {
		return err
	}
	if err := b.done(gen, success); err != nil {
		t.Fatalf("done: %v", err)
	}
	return nil
}

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	b, clk, changes := testBreaker(t, config.CircuitBreakerSpec{
		MaxRequests: 2, Timeout: 10 * time.Second, Trip: trip.MustCompile("consecutiveFailures > 2"),
	})
	// Successes in between reset the consecutive failures.
	for _, ok := range []bool{false, false, true, false, false} {
		if err := call(t, b, ok); err != nil {
			t.Fatalf("closed breaker refused a call: %v", err)
		}
	}
	if s := b.State(); s != StateClosed {
		t.Fatalf("state after 2 consecutive failures = %s, want closed", s)
	}
	if err := call(t, b, false); err != nil {
		t.Fatal(err)
	}
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after 3 consecutive failures = %s, want open", s)
	}
	if err := call(t, b, true); err != ErrBreakerOpen {
		t.Fatalf("open breaker: call = %v, want ErrBreakerOpen", err)
	}
	clk.Advance(9 * time.Second)
	if err := call(t, b, true); err != ErrBreakerOpen {
		t.Fatalf("before the timeout: call = %v, want ErrBreakerOpen", err)
	}
	clk.Advance(time.Second)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state after the timeout = %s, want half-open", s)
	}
	// Half-open: maxRequests (2) calls go through, a third waits.
	g1, err1 := b.allow()
	g2, err2 := b.allow()
	if _, err3 := b.allow(); err1 != nil || err2 != nil || err3 != ErrTooManyRequests {
		t.Fatalf("half-open admissions = %v, %v, %v; want nil, nil, ErrTooManyRequests", err1, err2, err3)
	}
	b.done(g1, true)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state after 1 of 2 trial successes = %s, want half-open", s)
	}
	b.done(g2, true)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state after 2 trial successes = %s, want closed", s)
	}
	want := []transition{{StateClosed, StateOpen}, {StateOpen, StateHalfOpen}, {StateHalfOpen, StateClosed}}
	if len(*changes) != len(want) {
		t.Fatalf("transitions = %v, want %v", *changes, want)
	}
	for i := range want {
		if (*changes)[i] != want[i] {
			t.Fatalf("transitions = %v, want %v", *changes, want)
		}
	}
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	b, clk, _ := testBreaker(t, config.CircuitBreakerSpec{Timeout: time.Second, Trip: trip.MustCompile("consecutiveFailures >= 1")})
	call(t, b, false)
	clk.Advance(time.Second)
	if err := call(t, b, false); err != nil {
		t.Fatalf("half-open trial refused: %v", err)
	}
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after a failed trial = %s, want open", s)
	}
	// The open period starts again from the failed trial.
	clk.Advance(999 * time.Millisecond)
	if err := call(t, b, true); err != ErrBreakerOpen {
		t.Fatalf("call = %v, want ErrBreakerOpen", err)
	}
}

func TestBreakerDefaults(t *testing.T) {
	b, clk, _ := testBreaker(t, config.CircuitBreakerSpec{})
	for i := range 5 {
		call(t, b, false)
		if s := b.State(); s != StateClosed {
			t.Fatalf("state after %d failures = %s; the default trips after more than 5", i+1, s)
		}
	}
	call(t, b, false)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after 6 failures = %s, want open", s)
	}
	clk.Advance(59 * time.Second)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after 59s = %s; the default timeout is 60s", s)
	}
	clk.Advance(time.Second)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state after 60s = %s, want half-open", s)
	}
}

func TestBreakerIntervalClearsCounts(t *testing.T) {
	b, clk, _ := testBreaker(t, config.CircuitBreakerSpec{Interval: 5 * time.Second, Trip: trip.MustCompile("totalFailures >= 3")})
	call(t, b, false)
	call(t, b, false)
	clk.Advance(5 * time.Second)
	call(t, b, false)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state = %s: the interval should have cleared the first two failures", s)
	}
	call(t, b, false)
	call(t, b, false)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after 3 failures in one interval = %s, want open", s)
	}
}

func TestBreakerIgnoresStaleOutcomes(t *testing.T) {
	b, clk, _ := testBreaker(t, config.CircuitBreakerSpec{Timeout: time.Second, Trip: trip.MustCompile("consecutiveFailures >= 1")})
	slow, _ := b.allow() // admitted while closed, finishes much later
	call(t, b, false)    // opens
	clk.Advance(time.Second)
	trial, err := b.allow() // half-open trial
	if err != nil {
		t.Fatal(err)
	}
	b.done(slow, false) // from an older generation: ignored
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("a stale failure changed the state to %s", s)
	}
	b.done(trial, true)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state = %s, want closed", s)
	}
}

func TestBreakerCancel(t *testing.T) {
	b, clk, _ := testBreaker(t, config.CircuitBreakerSpec{Timeout: time.Second, Trip: trip.MustCompile("consecutiveFailures >= 1")})
	call(t, b, false)
	clk.Advance(time.Second)
	g, err := b.allow()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.allow(); err != ErrTooManyRequests {
		t.Fatalf("second trial: %v, want ErrTooManyRequests", err)
	}
	b.cancel(g) // the trial ended without an outcome: another may go
	if _, err := b.allow(); err != nil {
		t.Fatalf("after cancel: %v", err)
	}
}
