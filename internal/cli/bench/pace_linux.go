package bench

import (
	"context"
	"syscall"
	"time"
)

// prSetTimerSlack is PR_SET_TIMERSLACK from <linux/prctl.h>.
const prSetTimerSlack = 29

// maxSleepChunk bounds one nanosleep, so a cancelled run does not wait for
// a far-away due time.
const maxSleepChunk = 10 * time.Millisecond

// pacer sleeps until due times as precisely as the machine allows without
// burning a core. It sleeps in nanosleep(2) with a 1 µs timer slack rather
// than on the runtime's timers, which round sub-millisecond sleeps up to a
// millisecond when the process is otherwise idle, then spins on the clock
// for the last spin of each wait (the kernel still wakes a sleeper some
// 40 µs late on a VM). The slack is set on whichever thread runs the
// sleeper (a thread attribute, harmless to keep: this process's timers
// only get more precise).
type pacer struct{ spin time.Duration }

func newPacer(spin time.Duration) *pacer { return &pacer{spin: spin} }

// sleepUntil returns true at t or just after it, or false when ctx ends
// first.
func (p *pacer) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		d := time.Until(t) - p.spin
		if d <= 0 {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
		ts := syscall.NsecToTimespec(int64(min(d, maxSleepChunk)))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: the loop sleeps again
	}
	for time.Now().Before(t) {
	}
	return ctx.Err() == nil
}
