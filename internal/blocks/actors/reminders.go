package actors

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/apierr"
)

// ReminderRequest registers a reminder.
type ReminderRequest struct {
	ActorType, ActorID, Name string
	// Data is raw JSON passed back in every callback.
	Data                 json.RawMessage
	DueTime, Period, TTL string
	// Overwrite false refuses to replace an existing reminder
	// (ERR_ACTOR_REMINDER_ALREADY_EXISTS); nil means true, as in daprd.
	Overwrite *bool
}

// Reminder is a registered reminder as the API reports it.
type Reminder struct {
	ActorType, ActorID, Name string
	Data                     json.RawMessage
	DueTime, Period          string
	// Expiration is when the reminder expires (zero: never).
	Expiration time.Time
}

// reminderState is the set of reminders this host schedules: those of the
// actors it owns.
type reminderState struct {
	mu        sync.Mutex
	store     *reminderStore
	scheduled map[string]*scheduledReminder
}

type scheduledReminder struct {
	ref ReminderRef
	job *job
	// firing is held during a firing, so that a reschedule that comes due
	// meanwhile (a sync from another host) cannot fire it twice at once.
	firing sync.Mutex
}

func newReminderState() *reminderState {
	return &reminderState{scheduled: map[string]*scheduledReminder{}}
}

// reminderPrecheck applies the checks every reminder operation shares.
func (b *Block) reminderPrecheck(ctx context.Context, typ, id, name string) (*reminderStore, error) {
	if err := validateActor(typ, id); err != nil {
		return nil, err
	}
	if err := validateName("reminder name", name); err != nil {
		return nil, err
	}
	if err := b.waitReady(ctx); err != nil {
		return nil, err
	}
	// As daprd: a type this sidecar does not host is refused first (a
	// sidecar without an actor state store hosts none).
	if _, ok := b.typeConfig(typ); !ok {
		return nil, apierr.ActorReminderNonHosted.New("operations on actor reminders are only possible on hosted actor types")
	}
	return b.reminderStore()
}

// CreateReminder registers (or replaces) a reminder and schedules it on the
// actor's owner.
func (b *Block) CreateReminder(ctx context.Context, req ReminderRequest) error {
	rs, err := b.reminderPrecheck(ctx, req.ActorType, req.ActorID, req.Name)
	if err != nil {
		return err
	}
	now := time.Now()
	due, period, expires, err := parseSchedule(req.DueTime, req.Period, req.TTL, now, "reminder")
	if err != nil {
		return apierr.ActorReminderCreate.Wrap(err, "error creating actor reminder")
	}
	rec := &reminderRecord{
		ActorType: req.ActorType, ActorID: req.ActorID, Name: req.Name, Data: req.Data,
		DueTime: req.DueTime, Period: req.Period, TTL: req.TTL,
		Registered: now.UTC(), Next: due.UTC(), Left: period.Repeats,
	}
	if !expires.IsZero() {
		e := expires.UTC()
		rec.Expiration = &e
	}
	cfg, _ := b.typeConfig(req.ActorType)
	n, err := rs.partitions(ctx, req.ActorType, cfg.Partitions, true)
	if err != nil {
		return apierr.ActorReminderCreate.Wrap(err, "error creating actor reminder")
	}
	var ifMatch *string
	if req.Overwrite != nil && !*req.Overwrite {
		none := ""
		ifMatch = &none
	}
	if err := rs.put(ctx, rec, n, ifMatch); err != nil {
		if ifMatch != nil && errors.Is(err, cstate.ErrETagMismatch) {
			return apierr.ActorReminderAlreadyExists.New("actor reminder already exists: %s", req.Name)
		}
		return apierr.ActorReminderCreate.Wrap(err, "error creating actor reminder")
	}
	b.reminderChanged(ctx, rec.ref(), rec)
	return nil
}

// GetReminder reads a reminder.
func (b *Block) GetReminder(ctx context.Context, typ, id, name string) (*Reminder, error) {
	rs, err := b.reminderPrecheck(ctx, typ, id, name)
	if err != nil {
		return nil, err
	}
	rec, _, err := rs.get(ctx, ReminderRef{ActorType: typ, ActorID: id, Name: name})
	if err != nil {
		return nil, apierr.ActorReminderGet.Wrap(err, "error getting actor reminder")
	}
	if rec == nil {
		return nil, apierr.ActorReminderNotFound.New("actor reminder not found: %s", name)
	}
	r := &Reminder{ActorType: rec.ActorType, ActorID: rec.ActorID, Name: rec.Name, Data: rec.Data, DueTime: rec.DueTime, Period: rec.Period}
	if rec.Expiration != nil {
		r.Expiration = *rec.Expiration
	}
	return r, nil
}

// DeleteReminder unregisters a reminder; deleting a missing one succeeds.
func (b *Block) DeleteReminder(ctx context.Context, typ, id, name string) error {
	rs, err := b.reminderPrecheck(ctx, typ, id, name)
	if err != nil {
		return err
	}
	ref := ReminderRef{ActorType: typ, ActorID: id, Name: name}
	n, err := rs.partitions(ctx, typ, 0, false)
	if err != nil {
		return apierr.ActorReminderDelete.Wrap(err, "error deleting actor reminder")
	}
	if n > 0 {
		if err := rs.remove(ctx, ref, n, ""); err != nil {
			return apierr.ActorReminderDelete.Wrap(err, "error deleting actor reminder")
		}
	}
	b.reminderChanged(ctx, ref, nil)
	return nil
}

// reminderChanged schedules (rec non-nil) or unschedules a reminder here
// when this host owns its actor, and tells the owner otherwise.
func (b *Block) reminderChanged(ctx context.Context, ref ReminderRef, rec *reminderRecord) {
	addr, ok := b.placement.Lookup(ref.ActorType, ref.ActorID)
	if ok && addr == b.address {
		if rec != nil {
			b.scheduleReminder(ref, rec.Next)
		} else {
			b.unscheduleReminder(ref)
		}
		return
	}
	b.unscheduleReminder(ref)
	if !ok || b.remote == nil {
		return // the owner loads it when it gets a table
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := b.remote.SyncReminder(sctx, addr, ref); err != nil {
		b.log.Warn("could not tell the actor's host about a reminder change; it picks it up with the next placement table", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "host", addr, "error", err)
	}
}

// SyncReminder (re)loads one reminder from the store: another host
// changed it. It is a no-op unless this host owns the actor.
func (b *Block) SyncReminder(ctx context.Context, ref ReminderRef) error {
	if err := validateActor(ref.ActorType, ref.ActorID); err != nil {
		return err
	}
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	rs, err := b.reminderStore()
	if err != nil {
		return err
	}
	if addr, ok := b.placement.Lookup(ref.ActorType, ref.ActorID); !ok || addr != b.address {
		return ErrActorMoved
	}
	rec, _, err := rs.get(ctx, ref)
	if err != nil {
		return apierr.ActorReminderGet.Wrap(err, "error getting actor reminder")
	}
	if rec == nil {
		b.unscheduleReminder(ref)
		return nil
	}
	b.scheduleReminder(ref, rec.Next)
	return nil
}

// scheduleReminder schedules (or moves) the firing of a reminder.
func (b *Block) scheduleReminder(ref ReminderRef, at time.Time) {
	if b.closed.Load() {
		return
	}
	b.rem.mu.Lock()
	sr := b.rem.scheduled[ref.key()]
	if sr == nil {
		sr = &scheduledReminder{ref: ref}
		sr.job = newJob(func() { b.fireReminder(sr) })
		b.rem.scheduled[ref.key()] = sr
	}
	b.rem.mu.Unlock()
	b.sched.schedule(sr.job, at)
}

func (b *Block) unscheduleReminder(ref ReminderRef) {
	b.rem.mu.Lock()
	sr := b.rem.scheduled[ref.key()]
	delete(b.rem.scheduled, ref.key())
	b.rem.mu.Unlock()
	if sr != nil {
		b.sched.cancel(sr.job)
	}
}

func (b *Block) isScheduled(ref ReminderRef) bool {
	b.rem.mu.Lock()
	defer b.rem.mu.Unlock()
	return b.rem.scheduled[ref.key()] != nil
}

// current reports whether sr is still the scheduled entry of its reminder.
func (b *Block) current(sr *scheduledReminder) bool {
	b.rem.mu.Lock()
	defer b.rem.mu.Unlock()
	return b.rem.scheduled[sr.ref.key()] == sr
}

// unscheduleMoved stops the reminders of actors this host no longer owns.
func (b *Block) unscheduleMoved() {
	b.rem.mu.Lock()
	var moved []*scheduledReminder
	for k, sr := range b.rem.scheduled {
		if addr, ok := b.placement.Lookup(sr.ref.ActorType, sr.ref.ActorID); !ok || addr != b.address {
			delete(b.rem.scheduled, k)
			moved = append(moved, sr)
		}
	}
	b.rem.mu.Unlock()
	for _, sr := range moved {
		b.sched.cancel(sr.job)
	}
}

// fireReminder runs one firing: the record is read again (it may have been
// deleted or replaced elsewhere), the app called in the actor's turn, and
// the record advanced to the next firing, guarded by its ETag.
func (b *Block) fireReminder(sr *scheduledReminder) {
	ctx := b.ctx
	ref := sr.ref
	retry := func(d time.Duration) {
		if b.current(sr) {
			b.sched.schedule(sr.job, time.Now().Add(d))
		}
	}
	if !sr.firing.TryLock() {
		retry(50 * time.Millisecond)
		return
	}
	defer sr.firing.Unlock()
	if err := b.gate.wait(ctx); err != nil {
		return
	}
	if addr, ok := b.placement.Lookup(ref.ActorType, ref.ActorID); !ok || addr != b.address {
		b.unscheduleReminder(ref)
		return
	}
	cfg, ok := b.typeConfig(ref.ActorType)
	if !ok || !b.current(sr) {
		return
	}
	rs, err := b.reminderStore()
	if err != nil {
		return
	}
	rec, etag, err := rs.get(ctx, ref)
	if err != nil {
		b.log.Warn("reading a reminder failed; retrying", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "error", err)
		retry(time.Second)
		return
	}
	if rec == nil {
		b.unscheduleReminder(ref)
		return
	}
	now := time.Now()
	if rec.Next.After(now) {
		// Replaced meanwhile with a later first firing.
		b.scheduleReminder(ref, rec.Next)
		return
	}
	n, err := rs.partitions(ctx, ref.ActorType, cfg.Partitions, true)
	if err != nil {
		retry(time.Second)
		return
	}
	if rec.Expiration != nil && now.After(*rec.Expiration) {
		b.dropReminder(ctx, rs, ref, n, etag)
		return
	}
	period, err := ParsePeriod(rec.Period)
	if err != nil {
		b.log.Error("a stored reminder has an invalid period; deleting it", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "period", rec.Period, "error", err)
		b.dropReminder(ctx, rs, ref, n, etag)
		return
	}
	cancel, err := b.fireInTurn(ctx, cfg, rec)
	switch {
	case errors.Is(err, errDeactivated):
		retry(10 * time.Millisecond)
		return
	case err != nil && ctx.Err() != nil:
		return // shutting down before the app answered: the next owner fires it
	case err != nil:
		b.log.Warn("actor reminder callback failed", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "error", err)
	}
	// The firing happened: record it even when the sidecar is shutting
	// down meanwhile, so that the next owner does not fire it again.
	pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer pcancel()
	left := rec.Left
	if left > 0 {
		left--
	}
	next := period.After(rec.Next)
	if !next.After(now) {
		next = skipMissed(period, next, now)
	}
	if cancel || !period.HasInterval() || left == 0 || (rec.Expiration != nil && next.After(*rec.Expiration)) {
		b.dropReminder(pctx, rs, ref, n, etag)
		return
	}
	rec.Next, rec.Left = next.UTC(), left
	err = rs.update(pctx, rec, etag)
	switch {
	case errors.Is(err, cstate.ErrETagMismatch):
		// Re-registered or deleted while firing: go by the new record.
		if err := b.SyncReminder(pctx, ref); err != nil && !errors.Is(err, ErrActorMoved) {
			retry(time.Second)
		}
		return
	case err != nil:
		b.log.Warn("saving a reminder's schedule failed", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "error", err)
	}
	if b.current(sr) {
		b.sched.schedule(sr.job, next)
	}
}

// fireInTurn calls the app's reminder callback in the actor's turn.
func (b *Block) fireInTurn(ctx context.Context, cfg TypeConfig, rec *reminderRecord) (bool, error) {
	rid := ""
	if cfg.Reentrant {
		rid = uuid.NewString()
	}
	a, err := b.table.getOrCreate(ctx, rec.ActorType, rec.ActorID)
	if err != nil {
		return false, err
	}
	release, err := a.acquire(ctx, rid, cfg.MaxStackDepth)
	if err != nil {
		return false, err
	}
	defer release()
	return b.fireApp(ctx, rec.ActorType, rec.ActorID, "remind", rec.Name, callbackBody{Data: rec.Data, DueTime: rec.DueTime, Period: rec.Period}, rid)
}

// dropReminder deletes a finished reminder (unless it was replaced
// meanwhile: then the new record is scheduled).
func (b *Block) dropReminder(ctx context.Context, rs *reminderStore, ref ReminderRef, partitions int, etag string) {
	err := rs.remove(ctx, ref, partitions, etag)
	if errors.Is(err, cstate.ErrETagMismatch) {
		_ = b.SyncReminder(ctx, ref)
		return
	}
	if err != nil {
		b.log.Warn("deleting a finished reminder failed", "type", ref.ActorType, "id", ref.ActorID, "reminder", ref.Name, "error", err)
	}
	b.unscheduleReminder(ref)
}

func (b *Block) kickReminderLoad() {
	select {
	case b.loadKick <- struct{}{}:
	default:
	}
}

// reminderRescan is how often a host rescans the reminder index even
// without a table change, to pick up a reminder another host registered
// for one of its actors when telling it failed.
const reminderRescan = time.Minute

// reminderLoop loads the reminders of the actors this host owns whenever
// the table changes, and every reminderRescan.
func (b *Block) reminderLoop(ctx context.Context) {
	t := time.NewTicker(reminderRescan)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.loadKick:
		case <-t.C:
		}
		if err := b.loadReminders(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("loading reminders failed; retrying", "error", err)
			select {
			case <-time.After(time.Second):
				b.kickReminderLoad()
			case <-ctx.Done():
				return
			}
		}
	}
}

// loadReminders scans the index of every hosted type and schedules the
// reminders of owned actors that are not scheduled yet.
func (b *Block) loadReminders(ctx context.Context) error {
	rs, err := b.reminderStore()
	if err != nil {
		return nil // no store: no reminders
	}
	loaded := 0
	for _, typ := range b.HostedTypes() {
		var owned []ReminderRef
		err := rs.scan(ctx, typ, func(refs []ReminderRef) {
			for _, r := range refs {
				if addr, ok := b.placement.Lookup(r.ActorType, r.ActorID); ok && addr == b.address && !b.isScheduled(r) {
					owned = append(owned, r)
				}
			}
		})
		if err != nil {
			return err
		}
		for _, ref := range owned {
			rec, _, err := rs.get(ctx, ref)
			if err != nil {
				return err
			}
			if rec == nil {
				continue // deleted after the index was read, or a stale entry
			}
			if addr, ok := b.placement.Lookup(ref.ActorType, ref.ActorID); ok && addr == b.address && !b.isScheduled(ref) {
				b.scheduleReminder(ref, rec.Next)
				loaded++
			}
		}
	}
	if loaded > 0 {
		b.log.Info("reminders loaded for the actors this host owns", "count", loaded)
	}
	return nil
}
