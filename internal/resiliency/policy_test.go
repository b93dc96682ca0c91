package resiliency

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/resiliency/trip"
)

// fakeRecorder counts what a policy records.
type fakeRecorder struct {
	mu        sync.Mutex
	loaded    []string
	executed  []Labels
	activated []Labels
}

func (r *fakeRecorder) PolicyLoaded(name, ns string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.loaded = append(r.loaded, name+"/"+ns)
}

func (r *fakeRecorder) PolicyExecuted(l Labels) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.executed = append(r.executed, l)
}

func (r *fakeRecorder) PolicyActivated(l Labels) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.activated = append(r.activated, l)
}

func (r *fakeRecorder) count(list []Labels, policy, status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range list {
		if l.Policy == policy && (status == "*" || l.Status == status) {
			n++
		}
	}
	return n
}

func retrySpec(maxRetries int, d time.Duration) *config.RetrySpec {
	return &config.RetrySpec{Policy: config.RetryConstant, Duration: d, MaxInterval: time.Second, MaxRetries: maxRetries}
}

func testPolicy(timeout time.Duration, retry *config.RetrySpec, rec Recorder) *Policy {
	return &Policy{
		labels:  Labels{Name: "res", Flow: FlowOutbound, Target: "app_test"},
		timeout: timeout, retry: retry, rec: rec,
		log: slog.New(slog.DiscardHandler), now: time.Now,
	}
}

// flaky fails its first n calls with err, then succeeds.
type flaky struct {
	mu    sync.Mutex
	n     int
	err   error
	calls int
}

func (f *flaky) op(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.n {
		return f.err
	}
	return nil
}

func TestNilPolicyRunsOnce(t *testing.T) {
	var p *Policy
	f := &flaky{n: 1, err: io.ErrUnexpectedEOF}
	if err := p.Run(context.Background(), f.op); !errors.Is(err, io.ErrUnexpectedEOF) || f.calls != 1 {
		t.Fatalf("Run = %v after %d calls, want the error after 1", err, f.calls)
	}
	if p.HasRetries() || p.HasBreaker() || p.Timeout() != 0 {
		t.Fatal("a nil policy reports policies")
	}
}

func TestRetry(t *testing.T) {
	rec := &fakeRecorder{}
	p := testPolicy(0, retrySpec(5, time.Millisecond), rec)
	f := &flaky{n: 3, err: errors.New("connection refused")}
	if err := p.Run(context.Background(), f.op); err != nil || f.calls != 4 {
		t.Fatalf("Run = %v after %d calls, want success after 4", err, f.calls)
	}
	if n := rec.count(rec.executed, PolicyRetry, "*"); n != 1 {
		t.Errorf("retry executions recorded = %d, want 1", n)
	}
	if n := rec.count(rec.activated, PolicyRetry, "*"); n != 1 {
		t.Errorf("retry activations recorded = %d, want 1 (once per call)", n)
	}

	t.Run("gives up after maxRetries", func(t *testing.T) {
		f := &flaky{n: 100, err: errors.New("boom")}
		err := testPolicy(0, retrySpec(3, 0), nil).Run(context.Background(), f.op)
		if err == nil || err.Error() != "boom" || f.calls != 4 {
			t.Fatalf("Run = %v after %d calls, want boom after 4", err, f.calls)
		}
	})
	t.Run("maxRetries 0 never retries", func(t *testing.T) {
		f := &flaky{n: 100, err: errors.New("boom")}
		p := testPolicy(0, retrySpec(0, 0), nil)
		if err := p.Run(context.Background(), f.op); err == nil || f.calls != 1 || p.HasRetries() {
			t.Fatalf("Run = %v after %d calls (HasRetries %v), want 1 call", err, f.calls, p.HasRetries())
		}
	})
	t.Run("-1 retries until success", func(t *testing.T) {
		f := &flaky{n: 50, err: errors.New("boom")}
		if err := testPolicy(0, retrySpec(-1, 0), nil).Run(context.Background(), f.op); err != nil || f.calls != 51 {
			t.Fatalf("Run = %v after %d calls, want success after 51", err, f.calls)
		}
	})
	t.Run("permanent and handled errors are not retried", func(t *testing.T) {
		cause := errors.New("the caller's fault")
		for _, mark := range []func(error) error{Permanent, Handled} {
			calls := 0
			err := testPolicy(0, retrySpec(5, 0), nil).Run(context.Background(), func(context.Context) error {
				calls++
				return mark(cause)
			})
			if err != cause || calls != 1 {
				t.Fatalf("Run = %#v after %d calls, want the unmarked cause after 1", err, calls)
			}
		}
	})
	t.Run("the caller's cancellation ends the wait", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		f := &flaky{n: 100, err: errors.New("boom")}
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		err := testPolicy(0, retrySpec(-1, time.Hour), nil).Run(ctx, f.op)
		if err == nil || err.Error() != "boom" || f.calls != 1 || time.Since(start) > 5*time.Second {
			t.Fatalf("Run = %v after %d calls in %v, want the last error once cancelled", err, f.calls, time.Since(start))
		}
	})
}

func TestRetryMatching(t *testing.T) {
	spec := retrySpec(3, 0)
	spec.HTTPStatusCodes = []config.CodeRange{{From: 429, To: 429}, {From: 500, To: 599}}
	spec.GRPCStatusCodes = []config.CodeRange{{From: 14, To: 14}}
	for _, c := range []struct {
		err       *StatusError
		wantCalls int
	}{
		{&StatusError{Code: 503}, 4},
		{&StatusError{Code: 429}, 4},
		{&StatusError{Code: 404}, 1},
		{&StatusError{Code: 14, GRPC: true}, 4},
		{&StatusError{Code: 5, GRPC: true}, 1},
	} {
		calls := 0
		err := testPolicy(0, spec, nil).Run(context.Background(), func(context.Context) error { calls++; return c.err })
		if err != c.err || calls != c.wantCalls {
			t.Errorf("%v: Run = %v after %d calls, want %d calls", c.err, err, calls, c.wantCalls)
		}
	}
	// Without matching codes every failure status is retried; errors that
	// are not statuses always are.
	calls := 0
	testPolicy(0, retrySpec(2, 0), nil).Run(context.Background(), func(context.Context) error { calls++; return &StatusError{Code: 404} })
	if calls != 3 {
		t.Errorf("404 without matching: %d calls, want 3", calls)
	}
	calls = 0
	testPolicy(0, spec, nil).Run(context.Background(), func(context.Context) error { calls++; return io.EOF })
	if calls != 4 {
		t.Errorf("transport error with matching codes: %d calls, want 4", calls)
	}
}

func TestTimeout(t *testing.T) {
	rec := &fakeRecorder{}
	p := testPolicy(50*time.Millisecond, nil, rec)
	start := time.Now()
	err := p.Run(context.Background(), func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("the app did not answer: " + ctx.Err().Error())
	})
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "context deadline exceeded" {
		t.Fatalf("Run = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the timeout took %v", d)
	}
	if n := rec.count(rec.activated, PolicyTimeout, "*"); n != 1 {
		t.Errorf("timeout activations = %d, want 1", n)
	}

	t.Run("each attempt has its own timeout", func(t *testing.T) {
		calls := 0
		err := testPolicy(20*time.Millisecond, retrySpec(2, 0), nil).Run(context.Background(), func(ctx context.Context) error {
			calls++
			if calls < 3 {
				<-ctx.Done()
				return ctx.Err()
			}
			return ctx.Err() // a fresh deadline: nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("Run = %v after %d calls, want success on the third", err, calls)
		}
	})
	t.Run("the caller's own deadline is not the policy's", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := testPolicy(time.Hour, nil, nil).Run(ctx, func(ctx context.Context) error { return ctx.Err() })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	})
}

func TestDoKeepsTheAttemptAlive(t *testing.T) {
	p := testPolicy(time.Hour, nil, nil)
	var attemptCtx context.Context
	release, err := p.Do(context.Background(), func(ctx context.Context) error { attemptCtx = ctx; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if attemptCtx.Err() != nil {
		t.Fatal("the attempt's context ended before release")
	}
	if Attempt(attemptCtx) != 1 {
		t.Errorf("Attempt = %d, want 1", Attempt(attemptCtx))
	}
	release()
	if attemptCtx.Err() == nil {
		t.Fatal("release did not end the attempt's context")
	}
}

func TestPolicyWithBreaker(t *testing.T) {
	rec := &fakeRecorder{}
	clk := newClock()
	p := testPolicy(0, retrySpec(10, 0), rec)
	p.cbs = []*breaker{newBreaker("cb", config.CircuitBreakerSpec{Timeout: time.Minute, Trip: trip.MustCompile("consecutiveFailures > 2")}, clk.Now, nil)}
	calls := 0
	err := p.Run(context.Background(), func(context.Context) error { calls++; return errors.New("down") })
	// Three failures open the breaker; the fourth attempt is refused and
	// ends the retries.
	if !errors.Is(err, ErrBreakerOpen) || calls != 3 {
		t.Fatalf("Run = %v after %d calls, want ErrBreakerOpen after 3", err, calls)
	}
	if n := rec.count(rec.executed, PolicyCircuitBreaker, string(StateClosed)); n != 1 {
		t.Errorf("breaker executions recorded closed = %d, want 1", n)
	}

	t.Run("handled errors are successes", func(t *testing.T) {
		p := testPolicy(0, nil, nil)
		p.cbs = []*breaker{newBreaker("cb", config.CircuitBreakerSpec{Trip: trip.MustCompile("consecutiveFailures >= 1")}, clk.Now, nil)}
		for range 5 {
			p.Run(context.Background(), func(context.Context) error { return Handled(errors.New("etag mismatch")) })
		}
		if s := p.cbs[0].State(); s != StateClosed {
			t.Fatalf("state = %s after handled errors, want closed", s)
		}
	})
	t.Run("both breakers must admit", func(t *testing.T) {
		typ := newBreaker("type", config.CircuitBreakerSpec{Trip: trip.MustCompile("consecutiveFailures >= 1")}, clk.Now, nil)
		id := newBreaker("id", config.CircuitBreakerSpec{Trip: trip.MustCompile("consecutiveFailures >= 1")}, clk.Now, nil)
		p := testPolicy(0, nil, nil)
		p.cbs = []*breaker{typ, id}
		p.Run(context.Background(), func(context.Context) error { return errors.New("down") })
		if typ.State() != StateOpen || id.State() != StateOpen {
			t.Fatalf("states = %s, %s; want both open", typ.State(), id.State())
		}
	})
}

// BenchmarkRun measures what a policy adds to a successful call: the
// lookup a call site makes and the run itself.
func BenchmarkRun(b *testing.B) {
	ctx := context.Background()
	op := func(context.Context) error { return nil }
	none := New(Options{})
	with := New(Options{})
	with.Load([]config.Resiliency{{ObjectMeta: config.ObjectMeta{Name: "b"}, Spec: config.ResiliencySpec{
		Timeouts:        map[string]time.Duration{"t": time.Second},
		Retries:         map[string]config.RetrySpec{"r": *retrySpec(3, time.Millisecond)},
		CircuitBreakers: map[string]config.CircuitBreakerSpec{"cb": {MaxRequests: 1, Timeout: time.Minute}},
		Targets: config.ResiliencyTargets{Components: map[string]config.ComponentTarget{
			"store": {Outbound: config.PolicyNames{Timeout: "t", Retry: "r", CircuitBreaker: "cb"}},
		}},
	}}})
	for _, c := range []struct {
		name string
		p    *Provider
	}{{"no policy", none}, {"timeout+retry+breaker", with}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.p.ComponentOutbound("store", Statestore).Run(ctx, op); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
