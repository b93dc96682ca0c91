package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pairFunc performs one save+get pair on the worker's key number k. Each
// worker has its own pairFunc and calls it from one goroutine only.
type pairFunc func(ctx context.Context, k int) error

// loadOptions shape one load run.
type loadOptions struct {
	// Concurrency is the number of workers, each running pairs back to back.
	Concurrency int
	// Duration is how long pairs are measured after the warm-up; ignored
	// when Requests is set.
	Duration time.Duration
	// Requests, when positive, measures this many pairs in total, failed
	// ones included.
	Requests int
	// Warmup runs pairs without recording them first.
	Warmup time.Duration
	// Keys is the number of distinct keys per worker.
	Keys int
}

// maxConsecutiveErrors stops a worker that keeps failing (a sidecar that is
// gone) instead of spinning.
const maxConsecutiveErrors = 50

// loadResult is what a load run measured.
type loadResult struct {
	// Latencies of the measured pairs, sorted.
	Latencies []time.Duration
	// Elapsed is from the end of the warm-up to the last measured pair.
	Elapsed time.Duration
	// Total counts every successful pair, warm-up included (for CPU per pair).
	Total int
	// Errors counts failed pairs, warm-up included; FirstError is the first.
	Errors     int
	FirstError string
}

// PairsPerSec is the measured throughput.
func (r *loadResult) PairsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

type workerStats struct {
	lat      []time.Duration
	lastEnd  time.Time
	total    int
	errors   int
	firstErr error
	gaveUp   bool
}

// runLoad runs o.Concurrency workers made by newWorker until the measured
// window is over. It returns an error when ctx ends first, when a worker
// cannot be made, or when a worker gave up after repeated failures.
func runLoad(ctx context.Context, o loadOptions, newWorker func(id int) (pairFunc, error)) (*loadResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	workers := make([]pairFunc, o.Concurrency)
	for i := range workers {
		f, err := newWorker(i)
		if err != nil {
			return nil, err
		}
		workers[i] = f
	}
	if o.Requests == 0 {
		// A pair stuck on a dead server must not hang the run forever.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Warmup+o.Duration+30*time.Second)
		defer cancel()
	}
	start := time.Now()
	measureFrom := start.Add(o.Warmup)
	measureUntil := measureFrom.Add(o.Duration)
	var claimed atomic.Int64
	stats := make([]workerStats, len(workers))
	perWorker := 1024
	if o.Requests > 0 {
		perWorker = o.Requests/o.Concurrency + 1
	}
	var wg sync.WaitGroup
	for i, f := range workers {
		wg.Go(func() {
			st := &stats[i]
			st.lat = make([]time.Duration, 0, perWorker)
			k, consecutive := 0, 0
			for ctx.Err() == nil {
				t0 := time.Now()
				measured := !t0.Before(measureFrom)
				if measured {
					if o.Requests > 0 {
						if claimed.Add(1) > int64(o.Requests) {
							return
						}
					} else if !t0.Before(measureUntil) {
						return
					}
				}
				err := f(ctx, k)
				t1 := time.Now()
				k++
				if k == o.Keys {
					k = 0
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					st.errors++
					if st.firstErr == nil {
						st.firstErr = err
					}
					if consecutive++; consecutive >= maxConsecutiveErrors {
						st.gaveUp = true
						return
					}
					continue
				}
				consecutive = 0
				st.total++
				if measured {
					st.lat = append(st.lat, t1.Sub(t0))
					st.lastEnd = t1
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("load run did not finish in time (a request hung?): %w", err)
		}
		return nil, err
	}
	res := &loadResult{}
	var last time.Time
	n := 0
	for i := range stats {
		n += len(stats[i].lat)
	}
	res.Latencies = make([]time.Duration, 0, n)
	var gaveUp error
	for i := range stats {
		st := &stats[i]
		res.Latencies = append(res.Latencies, st.lat...)
		res.Total += st.total
		res.Errors += st.errors
		if st.firstErr != nil && res.FirstError == "" {
			res.FirstError = st.firstErr.Error()
		}
		if st.gaveUp && gaveUp == nil {
			gaveUp = fmt.Errorf("worker %d stopped after %d consecutive errors: %w", i, maxConsecutiveErrors, st.firstErr)
		}
		if st.lastEnd.After(last) {
			last = st.lastEnd
		}
	}
	if gaveUp != nil {
		return nil, gaveUp
	}
	if len(res.Latencies) == 0 {
		if res.FirstError != "" {
			return nil, fmt.Errorf("no pair succeeded: %s", res.FirstError)
		}
		return nil, errors.New("no pair was measured (is the warm-up longer than the run?)")
	}
	slices.Sort(res.Latencies)
	res.Elapsed = last.Sub(measureFrom)
	return res, nil
}

func (o loadOptions) validate() error {
	var errs []error
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d must be at least 1", o.Concurrency))
	}
	if o.Requests < 0 {
		errs = append(errs, fmt.Errorf("--requests %d must not be negative", o.Requests))
	}
	if o.Requests == 0 && o.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %v must be positive (or set --requests)", o.Duration))
	}
	if o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("--warmup %v must not be negative", o.Warmup))
	}
	if o.Keys < 1 {
		errs = append(errs, fmt.Errorf("--keys %d must be at least 1", o.Keys))
	}
	return errors.Join(errs...)
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// median returns the median of vs (the mean of the middle two for an even
// count), or 0 when it is empty. vs is not modified.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// percentileF is percentile for float samples (unsorted; not modified).
func percentileF(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
