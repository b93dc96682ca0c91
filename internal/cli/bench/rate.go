package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// reqFunc performs one request. Each worker has its own and calls it from
// one goroutine only.
type reqFunc func(ctx context.Context) error

// rateOptions shape an open-loop (fixed-rate) run.
type rateOptions struct {
	// Rate is the number of requests started per second, on a steady
	// schedule: request i is due at start + i/Rate.
	Rate float64
	// Duration is how long requests are measured, after Warmup.
	Duration time.Duration
	Warmup   time.Duration
	// Workers is the number of requests that may be in flight at once;
	// when all are busy, due requests wait, and that wait counts in their
	// latency.
	Workers int
	// Spin is how long before a due time the pacer stops sleeping and
	// spins on the clock (0: it only sleeps). Sleeping alone wakes it
	// 40–100 µs late on a VM; a short spin costs a few % of a core.
	Spin time.Duration
}

func (o rateOptions) validate() error {
	var errs []error
	if !(o.Rate >= 1) || math.IsInf(o.Rate, 0) || o.Rate > 1e6 {
		errs = append(errs, fmt.Errorf("--rate %g must be between 1 and 1000000 requests/s", o.Rate))
	}
	if o.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--rate-duration %v must be positive", o.Duration))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v must not be negative", o.Warmup))
	}
	if o.Workers < 1 {
		errs = append(errs, fmt.Errorf("--rate-workers %d must be at least 1", o.Workers))
	}
	if o.Spin < 0 || o.Spin > time.Millisecond {
		errs = append(errs, fmt.Errorf("--spin %v must be between 0 and 1ms", o.Spin))
	}
	return errors.Join(errs...)
}

// schedule is a steady request schedule: request i is due at Offset(i)
// after the start.
type schedule struct {
	rate float64
	// n is the number of requests in the warm-up and the measured window;
	// requests first..n-1 are measured.
	n, first int
}

func newSchedule(o rateOptions) schedule {
	return schedule{
		rate:  o.Rate,
		n:     int(math.Ceil(o.Rate * (o.Warmup + o.Duration).Seconds())),
		first: int(math.Ceil(o.Rate * o.Warmup.Seconds())),
	}
}

// Offset is when request i is due, from the start. It is computed from i,
// not accumulated, so rounding never drifts.
func (s schedule) Offset(i int) time.Duration {
	return time.Duration(math.Round(float64(i) * 1e9 / s.rate))
}

// Measured is the number of measured requests.
func (s schedule) Measured() int { return s.n - s.first }

// rateResult is what a fixed-rate run measured.
type rateResult struct {
	// Latencies of the measured requests, sorted, each from the time it
	// was due (not when it was sent), so a stall delays and counts every
	// request scheduled behind it (no coordinated omission).
	Latencies []time.Duration
	// Lags are, for the same requests, due → sent: the pacer's own
	// lateness plus any wait for a free worker. Sorted.
	Lags []time.Duration
	// Elapsed is from the first measured due time to the last measured
	// completion.
	Elapsed time.Duration
	// MeasureFrom is the first measured due time: requests due before it
	// were the warm-up.
	MeasureFrom time.Time
	// Total counts every successful request, warm-up included.
	Total      int
	Errors     int
	FirstError string
}

// ReqPerSec is the measured completion rate.
func (r *rateResult) ReqPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

type rateWorkerStats struct {
	lat, lag []time.Duration
	lastEnd  time.Time
	total    int
	errors   int
	firstErr error
}

// runRate runs requests on o's schedule with o.Workers workers made by
// newWorker and records each latency from the request's due time.
//
// The workers take turns as the pacer, so that no hand-off between
// goroutines (a thread wake-up, 20–70 µs on a VM) sits between a due time
// and its request: the worker holding the token takes the next slot,
// sleeps until it is due, passes the token on and sends the request
// itself. When every worker is busy the token waits, the next request
// goes out late, and the wait counts in its latency.
func runRate(ctx context.Context, o rateOptions, newWorker func(id int) (reqFunc, error)) (*rateResult, error) {
	return runRateDue(ctx, o, func(id int) (dueReqFunc, error) {
		f, err := newWorker(id)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context, _ time.Time) error { return f(ctx) }, nil
	})
}

// dueReqFunc is a reqFunc that is told when its request was due, for
// requests that carry their own timestamp (a published event stamped with
// its due time, so that the subscriber measures from it).
type dueReqFunc func(ctx context.Context, due time.Time) error

// runRateDue is runRate with workers that are told each request's due
// time.
func runRateDue(ctx context.Context, o rateOptions, newWorker func(id int) (dueReqFunc, error)) (*rateResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	workers := make([]dueReqFunc, o.Workers)
	for i := range workers {
		f, err := newWorker(i)
		if err != nil {
			return nil, err
		}
		workers[i] = f
	}
	sch := newSchedule(o)
	// A request stuck on a dead server must not hang the run forever.
	ctx, cancelTimeout := context.WithTimeout(ctx, o.Warmup+o.Duration+30*time.Second)
	defer cancelTimeout()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// token carries the next slot to the next free worker; the worker
	// that takes the last one (or sees ctx end) closes it. Only the
	// holder can close it, so it is closed once.
	token := make(chan int, 1)
	token <- 0
	start := time.Now().Add(time.Millisecond)
	p := newPacer(o.Spin)
	stats := make([]rateWorkerStats, len(workers))
	per := sch.Measured()/o.Workers + 16
	var wg sync.WaitGroup
	for w, f := range workers {
		wg.Go(func() {
			st := &stats[w]
			st.lat = make([]time.Duration, 0, per)
			st.lag = make([]time.Duration, 0, per)
			consecutive := 0
			for i := range token {
				if i >= sch.n || ctx.Err() != nil {
					close(token)
					return
				}
				due := start.Add(sch.Offset(i))
				if !p.sleepUntil(ctx, due) {
					close(token)
					return
				}
				t0 := time.Now()
				token <- i + 1
				err := f(ctx, due)
				t1 := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						continue
					}
					st.errors++
					if st.firstErr == nil {
						st.firstErr = err
					}
					if consecutive++; consecutive >= maxConsecutiveErrors {
						cancel(fmt.Errorf("worker %d stopped after %d consecutive errors: %w", w, maxConsecutiveErrors, st.firstErr))
					}
					continue
				}
				consecutive = 0
				st.total++
				if i >= sch.first {
					st.lat = append(st.lat, t1.Sub(due))
					st.lag = append(st.lag, t0.Sub(due))
					st.lastEnd = t1
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("fixed-rate run did not finish in time (a request hung?): %w", err)
		}
		return nil, err
	}
	res := &rateResult{}
	measureFrom := start.Add(sch.Offset(sch.first))
	var last time.Time
	lats := make([][]time.Duration, len(stats))
	lags := make([][]time.Duration, len(stats))
	for i := range stats {
		st := &stats[i]
		lats[i], lags[i] = st.lat, st.lag
		res.Total += st.total
		res.Errors += st.errors
		if st.firstErr != nil && res.FirstError == "" {
			res.FirstError = st.firstErr.Error()
		}
		if st.lastEnd.After(last) {
			last = st.lastEnd
		}
	}
	res.Latencies, res.Lags = mergeSamples(lats), mergeSamples(lags)
	if len(res.Latencies) == 0 {
		if res.FirstError != "" {
			return nil, fmt.Errorf("no request succeeded: %s", res.FirstError)
		}
		return nil, errors.New("no request was measured")
	}
	res.Elapsed, res.MeasureFrom = last.Sub(measureFrom), measureFrom
	return res, nil
}

// mergeSamples pools per-worker samples into one sorted slice, from which
// percentile gives the percentiles of the whole run (percentiles cannot be
// merged; samples can).
func mergeSamples(parts [][]time.Duration) []time.Duration {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]time.Duration, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	slices.Sort(out)
	return out
}
