package actors

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/internal/apierr"
)

// TimerRequest registers a timer.
type TimerRequest struct {
	ActorType, ActorID, Name string
	DueTime, Period, TTL     string
	Callback                 string
	// Data is raw JSON passed back in the callback.
	Data json.RawMessage
}

// timerJob is a registered timer of one activation; it lives in memory
// only and ends with the activation.
type timerJob struct {
	a        *actor
	name     string
	callback string
	data     json.RawMessage
	dueTime  string
	period   Period
	expires  time.Time // zero: never
	left     int       // firings left, -1 unlimited
	job      *job
}

// CreateTimer registers (or replaces) a timer of an actor active on, or
// owned by, this host.
func (b *Block) CreateTimer(ctx context.Context, req TimerRequest) error {
	if err := validateActor(req.ActorType, req.ActorID); err != nil {
		return err
	}
	if err := validateName("timer name", req.Name); err != nil {
		return err
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	if _, ok := b.typeConfig(req.ActorType); !ok {
		return apierr.ActorTimerCreate.New("error creating actor timer: can't create timer for actor %s||%s: actor type not registered", req.ActorType, req.ActorID)
	}
	now := time.Now()
	due, period, expires, err := parseSchedule(req.DueTime, req.Period, req.TTL, now, "timer")
	if err != nil {
		return apierr.ActorTimerCreate.Wrap(err, "error creating actor timer")
	}
	if err := b.gate.wait(ctx); err != nil {
		return apierr.From(err)
	}
	if addr, ok := b.placement.Lookup(req.ActorType, req.ActorID); !ok || addr != b.address {
		return apierr.ActorTimerCreate.New("error creating actor timer: actor %s||%s is not hosted by this sidecar; timers are registered on the actor's host", req.ActorType, req.ActorID)
	}
	for range 3 {
		a, err := b.table.getOrCreate(ctx, req.ActorType, req.ActorID)
		if err != nil {
			return apierr.From(err)
		}
		t := &timerJob{a: a, name: req.Name, callback: req.Callback, data: req.Data, dueTime: req.DueTime, period: period, expires: expires, left: period.Repeats}
		t.job = newJob(func() { b.fireTimer(t) })
		old, err := a.setTimer(req.Name, t)
		if errors.Is(err, errDeactivated) {
			continue
		}
		if old != nil {
			b.sched.cancel(old.job)
		}
		b.sched.schedule(t.job, due)
		return nil
	}
	return apierr.ActorTimerCreate.New("error creating actor timer: the actor is being deactivated")
}

// DeleteTimer unregisters a timer; deleting a missing one succeeds.
func (b *Block) DeleteTimer(ctx context.Context, typ, id, name string) error {
	if err := validateActor(typ, id); err != nil {
		return err
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	if a := b.table.get(typ, id); a != nil {
		if t := a.removeTimer(name, nil); t != nil {
			b.sched.cancel(t.job)
		}
	}
	return nil
}

// fireTimer runs one firing of a timer in the actor's turn and schedules
// the next.
func (b *Block) fireTimer(t *timerJob) {
	ctx := b.ctx
	a := t.a
	cfg, ok := b.typeConfig(a.typ)
	if !ok {
		return
	}
	rid := ""
	if cfg.Reentrant {
		rid = uuid.NewString()
	}
	release, err := a.acquire(ctx, rid, cfg.MaxStackDepth)
	if err != nil {
		return // deactivated (its timers are gone) or shutting down
	}
	// Deleted or replaced while waiting for the turn.
	a.mu.Lock()
	current := a.timers[t.name] == t
	a.mu.Unlock()
	if !current {
		release()
		return
	}
	period := t.period.Raw
	cancel, err := b.fireApp(ctx, a.typ, a.id, "timer", t.name, callbackBody{Data: t.data, Callback: &t.callback, DueTime: t.dueTime, Period: period}, rid)
	release()
	if err != nil && ctx.Err() == nil {
		b.log.Warn("actor timer callback failed", "type", a.typ, "id", a.id, "timer", t.name, "error", err)
	}
	if t.left > 0 {
		t.left--
	}
	next := t.period.After(t.job.at)
	if now := time.Now(); next.Before(now) {
		next = skipMissed(t.period, next, now)
	}
	if cancel || !t.period.HasInterval() || t.left == 0 || (!t.expires.IsZero() && next.After(t.expires)) {
		a.removeTimer(t.name, t)
		return
	}
	a.mu.Lock()
	alive := a.timers[t.name] == t && !a.dead
	a.mu.Unlock()
	if alive {
		b.sched.schedule(t.job, next)
	}
}

// skipMissed returns the first firing of p after now, counting from next
// (a host that was down or busy does not replay every missed period).
func skipMissed(p Period, next, now time.Time) time.Time {
	if p.Years == 0 && p.Months == 0 && p.Days == 0 && p.Duration > 0 {
		k := now.Sub(next)/p.Duration + 1
		return next.Add(k * p.Duration)
	}
	for i := 0; !next.After(now) && i < 100000; i++ {
		next = p.After(next)
	}
	return next
}

// parseSchedule reads due time, period and TTL as daprd: the due time is
// when the first firing happens (now when empty), the TTL is counted from
// the due time, and a schedule that already expired is refused.
func parseSchedule(dueTime, period, ttl string, now time.Time, what string) (due time.Time, p Period, expires time.Time, err error) {
	due = now
	if dueTime != "" {
		if due, err = ParseTime(dueTime, now); err != nil {
			return due, p, expires, errors.New("error parsing " + what + " due time: " + err.Error())
		}
	}
	if p, err = ParsePeriod(period); err != nil {
		return due, p, expires, errors.New("invalid " + what + " period: " + err.Error())
	}
	if ttl != "" {
		if expires, err = ParseTime(ttl, due); err != nil {
			return due, p, expires, errors.New("error parsing " + what + " TTL: " + err.Error())
		}
		if now.After(expires) || due.After(expires) {
			return due, p, expires, errors.New(what + " has already expired: dueTime " + due.Format(time.RFC3339) + " TTL " + ttl)
		}
	}
	return due, p, expires, nil
}
