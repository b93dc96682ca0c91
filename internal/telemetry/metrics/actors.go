package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// actorMetrics are daprd's dapr_runtime_actor_* series, with its names and
// labels (app_id, actor_type, and operation / success / reason), so the
// Grafana actor dashboards written for daprd read them unchanged. Actor
// types come from the hosted app's configuration and placement tables, and
// are bounded anyway like every client-influenced label.
type actorMetrics struct {
	tableOps      *prometheus.CounterVec
	rebalanced    *prometheus.CounterVec
	activated     *prometheus.CounterVec
	deactivated   *prometheus.CounterVec
	deactivateErr *prometheus.CounterVec
	timerFired    *prometheus.CounterVec
	reminderFired *prometheus.CounterVec
}

func newActorMetrics(f factory) actorMetrics {
	return actorMetrics{
		tableOps:      f.counter("runtime_actor_table_operation_recv_total", "The number of the received actor placement table operations.", "actor_type", "operation"),
		rebalanced:    f.counter("runtime_actor_rebalanced_total", "The number of the actor rebalance requests.", "actor_type"),
		activated:     f.counter("runtime_actor_activated_total", "The number of the actor activations.", "actor_type"),
		deactivated:   f.counter("runtime_actor_deactivated_total", "The number of the successful actor deactivation.", "actor_type"),
		deactivateErr: f.counter("runtime_actor_deactivated_failed_total", "The number of the failed actor deactivation.", "actor_type", "reason"),
		timerFired:    f.counter("runtime_actor_timers_fired_total", "The number of actor timers fired requests.", "actor_type", "success"),
		reminderFired: f.counter("runtime_actor_reminders_fired_total", "The number of actor reminders fired requests.", "actor_type", "success"),
	}
}

// ActorTableOperation counts a placement table operation ("lock",
// "update", "unlock") received by this sidecar (actor_type is "", as in
// daprd).
func (m *Metrics) ActorTableOperation(op string) {
	if m == nil {
		return
	}
	m.actors.tableOps.WithLabelValues("", op).Inc()
}

// ActorRebalanced counts an actor of actorType deactivated because a new
// table moved it to another host.
func (m *Metrics) ActorRebalanced(actorType string) {
	if m == nil {
		return
	}
	m.actors.rebalanced.WithLabelValues(m.actorTypes.get(actorType)).Inc()
}

// ActorActivated counts an actor of actorType activated on this host.
func (m *Metrics) ActorActivated(actorType string) {
	if m == nil {
		return
	}
	m.actors.activated.WithLabelValues(m.actorTypes.get(actorType)).Inc()
}

// ActorDeactivated counts a deactivation; a non-empty failReason counts it
// as failed (the app did not confirm it): daprd's reasons are "invoke" (no
// answer) and "status_code_<code>".
func (m *Metrics) ActorDeactivated(actorType, failReason string) {
	if m == nil {
		return
	}
	t := m.actorTypes.get(actorType)
	if failReason != "" {
		m.actors.deactivateErr.WithLabelValues(t, clean(failReason)).Inc()
		return
	}
	m.actors.deactivated.WithLabelValues(t).Inc()
}

// ActorTimerFired counts a timer firing of actorType and whether the app
// took it.
func (m *Metrics) ActorTimerFired(actorType string, success bool) {
	if m == nil {
		return
	}
	m.actors.timerFired.WithLabelValues(m.actorTypes.get(actorType), strconv.FormatBool(success)).Inc()
}

// ActorReminderFired counts a reminder firing of actorType and whether
// the app took it.
func (m *Metrics) ActorReminderFired(actorType string, success bool) {
	if m == nil {
		return
	}
	m.actors.reminderFired.WithLabelValues(m.actorTypes.get(actorType), strconv.FormatBool(success)).Inc()
}

// ActorGauge is what an actor type has on this host right now.
type ActorGauge struct {
	// Pending are the calls waiting for their actor's turn.
	Pending int
	// Timers are the active timers; Reminders the reminders this host
	// fires (those of the actors it owns).
	Timers, Reminders int
}

// ObserveActors makes the scrape read the actor runtime's current counts
// by type (dapr_runtime_actor_pending_actor_calls, _timers, _reminders):
// read when scraped rather than kept up to date on every call.
func (m *Metrics) ObserveActors(counts func() map[string]ActorGauge) {
	if m == nil || counts == nil {
		return
	}
	m.reg.MustRegister(&actorGauges{m: m, counts: counts})
}

var (
	actorPendingDesc   = prometheus.NewDesc(Namespace+"_runtime_actor_pending_actor_calls", "The number of pending actor calls waiting to acquire the per-actor lock.", []string{"app_id", "actor_type"}, nil)
	actorTimersDesc    = prometheus.NewDesc(Namespace+"_runtime_actor_timers", "The number of actor timer requests.", []string{"app_id", "actor_type"}, nil)
	actorRemindersDesc = prometheus.NewDesc(Namespace+"_runtime_actor_reminders", "The number of actor reminder requests.", []string{"app_id", "actor_type"}, nil)
)

// actorGauges is a collector over the runtime's counts.
type actorGauges struct {
	m      *Metrics
	counts func() map[string]ActorGauge
}

func (g *actorGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- actorPendingDesc
	ch <- actorTimersDesc
	ch <- actorRemindersDesc
}

func (g *actorGauges) Collect(ch chan<- prometheus.Metric) {
	app := g.m.o.AppID
	for typ, c := range g.counts() {
		t := g.m.actorTypes.get(typ)
		if t == "" {
			continue // past the bound
		}
		ch <- prometheus.MustNewConstMetric(actorPendingDesc, prometheus.GaugeValue, float64(c.Pending), app, t)
		ch <- prometheus.MustNewConstMetric(actorTimersDesc, prometheus.GaugeValue, float64(c.Timers), app, t)
		ch <- prometheus.MustNewConstMetric(actorRemindersDesc, prometheus.GaugeValue, float64(c.Reminders), app, t)
	}
}
