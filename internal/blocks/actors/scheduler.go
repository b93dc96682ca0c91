package actors

import (
	"container/heap"
	"sync"
	"time"
)

// job is a timer or reminder firing; fn runs in its own goroutine when the
// time comes. A job is scheduled at most once at a time: its owner
// schedules the next firing when fn is done.
type job struct {
	at    time.Time
	fn    func()
	index int // position in the heap; -1 when not scheduled
}

func newJob(fn func()) *job { return &job{fn: fn, index: -1} }

type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	j := old[n-1]
	old[n-1] = nil
	j.index = -1
	*h = old[:n-1]
	return j
}

// scheduler fires jobs at their time with one goroutine and one timer for
// all of them (a heap ordered by time), so a host with many reminders does
// not hold a timer each.
type scheduler struct {
	mu      sync.Mutex
	h       jobHeap
	wake    chan struct{}
	quit    chan struct{}
	stopped bool
	running sync.WaitGroup
}

func newScheduler() *scheduler {
	return &scheduler{wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// schedule (re)schedules j at at.
func (s *scheduler) schedule(j *job, at time.Time) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	j.at = at
	if j.index >= 0 {
		heap.Fix(&s.h, j.index)
	} else {
		heap.Push(&s.h, j)
	}
	first := s.h[0] == j
	s.mu.Unlock()
	if first {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// cancel unschedules j; a firing already running is not stopped.
func (s *scheduler) cancel(j *job) {
	if j == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if j.index >= 0 {
		heap.Remove(&s.h, j.index)
	}
}

// run fires due jobs until stop.
func (s *scheduler) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		var wait time.Duration = -1
		for len(s.h) > 0 {
			j := s.h[0]
			if d := j.at.Sub(now); d > 0 {
				wait = d
				break
			}
			heap.Pop(&s.h)
			s.running.Go(j.fn)
		}
		s.mu.Unlock()
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-s.quit:
			return
		case <-s.wake:
		case <-t.C:
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// stop ends run, drops every scheduled job and waits for running firings.
func (s *scheduler) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	for _, j := range s.h {
		j.index = -1
	}
	s.h = nil
	s.mu.Unlock()
	close(s.quit)
	s.running.Wait()
}
