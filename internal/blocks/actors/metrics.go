package actors

import "strconv"

// Metrics receives the actor runtime's events, for daprd's
// dapr_runtime_actor_* series (the sidecar's Prometheus metrics implement
// it; a nil Options.Metrics records nothing). Kept an interface so the
// block does not depend on how they are exported.
type Metrics interface {
	// ActorTableOperation counts a placement table operation received
	// ("lock", "update", "unlock").
	ActorTableOperation(op string)
	// ActorRebalanced counts an actor deactivated because a new table
	// moved it to another host.
	ActorRebalanced(actorType string)
	// ActorActivated counts an activation on this host.
	ActorActivated(actorType string)
	// ActorDeactivated counts the app told of a deactivation: failReason
	// is "" when it confirmed, else "invoke" (no answer) or
	// "status_code_<code>", daprd's reasons.
	ActorDeactivated(actorType, failReason string)
	// ActorTimerFired and ActorReminderFired count a firing and whether
	// the app took it.
	ActorTimerFired(actorType string, success bool)
	ActorReminderFired(actorType string, success bool)
}

// noMetrics records nothing.
type noMetrics struct{}

func (noMetrics) ActorTableOperation(string)      {}
func (noMetrics) ActorRebalanced(string)          {}
func (noMetrics) ActorActivated(string)           {}
func (noMetrics) ActorDeactivated(string, string) {}
func (noMetrics) ActorTimerFired(string, bool)    {}
func (noMetrics) ActorReminderFired(string, bool) {}

// TypeGauge is what one actor type has on this host at a moment.
type TypeGauge struct {
	// Pending are the calls waiting for their actor's turn.
	Pending int
	// Timers are the active timers.
	Timers int
	// Reminders are the reminders this host fires (those of the actors it
	// owns).
	Reminders int
}

// Gauges returns, by actor type, the calls waiting for a turn, the active
// timers and the scheduled reminders (dapr_runtime_actor_pending_actor_calls,
// _timers, _reminders): counted when asked (a scrape) rather than kept up
// to date on every call.
func (b *Block) Gauges() map[string]TypeGauge {
	out := map[string]TypeGauge{}
	for _, a := range b.table.all() {
		a.mu.Lock()
		g := out[a.typ]
		g.Pending += len(a.waiters)
		g.Timers += len(a.timers)
		out[a.typ] = g
		a.mu.Unlock()
	}
	b.rem.mu.Lock()
	for _, sr := range b.rem.scheduled {
		g := out[sr.ref.ActorType]
		g.Reminders++
		out[sr.ref.ActorType] = g
	}
	b.rem.mu.Unlock()
	return out
}

// failReason is daprd's reason label of a failed deactivation.
func failReason(err error) string {
	if se, ok := err.(*appStatusError); ok {
		return "status_code_" + strconv.Itoa(se.status)
	}
	return "invoke"
}
