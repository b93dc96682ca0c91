package apphealth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mecha-dev/mecha/internal/apphealth"
)

// script is a probe whose answers the test sets; it counts its calls.
type script struct {
	mu    sync.Mutex
	err   error
	block bool // wait for the deadline instead of answering
	calls int
}

func (s *script) set(err error, block bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err, s.block = err, block
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *script) probe(ctx context.Context) error {
	s.mu.Lock()
	s.calls++
	err, block := s.err, s.block
	s.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

// recorder collects the transitions reported to onChange.
type recorder struct {
	mu  sync.Mutex
	got []apphealth.Status
}

func (r *recorder) onChange(st apphealth.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, st)
}

func (r *recorder) changes() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]bool, len(r.got))
	for i, s := range r.got {
		out[i] = s.Healthy
	}
	return out
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// start runs a prober in the synctest bubble; the returned func stops it
// and returns Run's result.
func start(t *testing.T, cfg apphealth.Config, s *script, r *recorder, log *slog.Logger) (*apphealth.Prober, func() error) {
	t.Helper()
	p, err := apphealth.New(cfg, s.probe, r.onChange, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return p, stop
}

func TestStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		s := &script{err: errors.New("connection refused")}
		r := &recorder{}
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		p, stop := start(t, apphealth.Config{Interval: interval, Timeout: 100 * time.Millisecond, Threshold: 3}, s, r, log)

		// The app starts unhealthy; failures before the first success
		// report nothing.
		if st := p.Status(); st.Healthy || st.Failures != 3 {
			t.Fatalf("initial status %+v, want unhealthy with 3 failures", st)
		}
		synctest.Wait()
		if n := s.count(); n != 1 {
			t.Fatalf("probes right after Run = %d, want 1 (probe at once)", n)
		}
		// Ticks come at whole seconds; the test changes the script half
		// way between two of them.
		time.Sleep(interval / 2)
		time.Sleep(interval)
		synctest.Wait()
		if st := p.Status(); st.Healthy || st.Reason != "connection refused" {
			t.Fatalf("after failures: %+v", st)
		}
		if c := r.changes(); len(c) != 0 {
			t.Fatalf("transitions %v before any success, want none", c)
		}

		// One success: healthy.
		s.set(nil, false)
		time.Sleep(interval)
		synctest.Wait()
		if st := p.Status(); !st.Healthy || st.Failures != 0 || st.Reason != "" {
			t.Fatalf("after a success: %+v, want healthy", st)
		}
		// Threshold-1 failures keep it healthy; the next makes it unhealthy.
		s.set(errors.New("status 500"), false)
		for i := 1; i <= 2; i++ {
			time.Sleep(interval)
			synctest.Wait()
			if st := p.Status(); !st.Healthy || st.Failures != i {
				t.Fatalf("after %d failures: %+v, want still healthy", i, st)
			}
		}
		time.Sleep(interval)
		synctest.Wait()
		if st := p.Status(); st.Healthy || st.Failures != 3 || st.Reason != "status 500" {
			t.Fatalf("after 3 failures: %+v, want unhealthy", st)
		}
		// More failures report nothing more and do not overflow.
		for range 5 {
			time.Sleep(interval)
		}
		synctest.Wait()
		if st := p.Status(); st.Healthy || st.Failures != 4 {
			t.Fatalf("after many failures: %+v, want unhealthy, failures saturated at 4", st)
		}
		// A success in the middle of failures resets the count.
		s.set(nil, false)
		time.Sleep(interval)
		synctest.Wait()
		s.set(errors.New("flaky"), false)
		time.Sleep(2 * interval)
		synctest.Wait()
		s.set(nil, false)
		time.Sleep(interval)
		synctest.Wait()
		s.set(errors.New("flaky"), false)
		time.Sleep(2 * interval)
		synctest.Wait()
		if st := p.Status(); !st.Healthy || st.Failures != 2 {
			t.Fatalf("after non-consecutive failures: %+v, want healthy with 2 failures", st)
		}

		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		if got, want := r.changes(), []bool{true, false, true}; !equal(got, want) {
			t.Fatalf("transitions %v, want %v", got, want)
		}
		for _, want := range []string{"app entered healthy status", "app entered unhealthy status", "reason=\"status 500\""} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, logs.String())
			}
		}
	})
}

// TestTimeoutIsFailure: a probe that does not answer within Timeout fails,
// even one that ignores its context.
func TestTimeoutIsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{}
		r := &recorder{}
		p, stop := start(t, apphealth.Config{Interval: time.Second, Timeout: 200 * time.Millisecond, Threshold: 1}, s, r, nil)
		synctest.Wait()
		if !p.Status().Healthy {
			t.Fatal("not healthy after a successful probe")
		}
		s.set(nil, true)
		time.Sleep(time.Second)
		synctest.Wait() // the probe waits for its deadline
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		st := p.Status()
		if st.Healthy || !strings.Contains(st.Reason, "did not answer within 200ms") {
			t.Fatalf("after a probe timed out: %+v, want unhealthy, reason naming the timeout", st)
		}
		stop()
		if got, want := r.changes(), []bool{true, false}; !equal(got, want) {
			t.Fatalf("transitions %v, want %v", got, want)
		}
	})

	synctest.Test(t, func(t *testing.T) {
		// A probe that ignores its deadline but answers late still failed.
		p, err := apphealth.New(apphealth.Config{Interval: time.Second, Timeout: 100 * time.Millisecond, Threshold: 1}, func(context.Context) error {
			time.Sleep(300 * time.Millisecond)
			return nil
		}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if st := p.Status(); st.Healthy || !strings.Contains(st.Reason, "did not answer within 100ms") {
			t.Fatalf("late answer: %+v, want unhealthy", st)
		}
		cancel()
		<-done
	})
}

// TestEnqueue: Enqueue probes at once instead of at the next tick.
func TestEnqueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{err: errors.New("down")}
		p, stop := start(t, apphealth.Config{Interval: time.Hour, Timeout: time.Second, Threshold: 3}, s, &recorder{}, nil)
		defer stop()
		synctest.Wait()
		s.set(nil, false)
		p.Enqueue()
		synctest.Wait()
		if n := s.count(); n != 2 {
			t.Fatalf("probes = %d, want 2 (the first, the enqueued one)", n)
		}
		if !p.Status().Healthy {
			t.Fatal("an enqueued successful probe did not make the app healthy")
		}
	})
}

func TestNewRejects(t *testing.T) {
	ok := func(context.Context) error { return nil }
	cases := []struct {
		name  string
		cfg   apphealth.Config
		probe apphealth.Probe
		want  string
	}{
		{"zero interval", apphealth.Config{Timeout: time.Second, Threshold: 1}, ok, "interval 0s must be positive"},
		{"zero timeout", apphealth.Config{Interval: time.Second, Threshold: 1}, ok, "timeout 0s must be positive"},
		{"timeout above interval", apphealth.Config{Interval: time.Second, Timeout: 2 * time.Second, Threshold: 1}, ok, "timeout 2s must not be longer than the probe interval 1s"},
		{"zero threshold", apphealth.Config{Interval: time.Second, Timeout: time.Second}, ok, "threshold 0 must be at least 1"},
		{"nil probe", apphealth.Config{Interval: time.Second, Timeout: time.Second, Threshold: 1}, nil, "no probe function"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := apphealth.New(c.cfg, c.probe, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New = %v, %v; want an error containing %q", p, err, c.want)
			}
		})
	}
}
