package placement

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connBuffer is the number of orders queued for one stream. A round has at
// most three orders in flight per stream, plus a catch-up it preempted; a
// stream whose queue is full is not reading and is dropped.
const connBuffer = 16

// Operations of a PlacementOrder.
const (
	opLock   = "lock"
	opUpdate = "update"
	opUnlock = "unlock"
)

// conn is one sidecar's stream. Fields below the line belong to the term's
// loop goroutine.
type conn struct {
	id     uint64
	ns     string
	name   string
	out    chan *placementv1.PlacementOrder
	ctx    context.Context
	cancel context.CancelCauseFunc

	appID      string
	port       int64
	entities   []string
	load       int64
	lastSeen   time.Time
	version    uint64 // the last version it unlocked
	hasVersion bool
	round      *round
}

func (c *conn) key() string { return c.ns + "\x00" + c.name }

// round disseminates one table version to a set of streams: lock to all,
// then update to all once every lock is acked, then unlock likewise. A
// namespace round (catchup false) covers every stream of the namespace and
// is the only one that changes tables; a catch-up round brings one stream
// to the current version without involving any other.
type round struct {
	ns      *nsState
	catchup bool
	version uint64
	table   *placementv1.PlacementTables
	phase   string
	targets map[*conn]bool // → acked the current phase
	waiting int            // targets that have not acked the current phase
	seq     uint64         // phase counter, to ignore stale timeouts
	timer   *time.Timer
	started time.Time
	done    bool
}

// nsState is one namespace on the leader.
type nsState struct {
	name    string
	members map[string]Member // committed, at version
	version uint64
	table   *placementv1.PlacementTables
	conns   map[*conn]struct{}

	// pending maps member names to their wanted entry (nil: remove),
	// collected until the batch timer fires.
	pending      map[string]*Member
	pendingSince time.Time
	batchTimer   *time.Timer
	batchGen     uint64
	committing   bool
	round        *round

	rounds    uint64        // namespace rounds completed
	lastRound time.Duration // duration of the last one
}

// term is one leadership term: the loop that owns the streams and rounds
// while this node leads. It ends when leadership is lost or the server
// stops, closing every stream it holds.
type term struct {
	s       *Server
	ctx     context.Context
	cancel  context.CancelCauseFunc
	events  chan any
	started time.Time

	conns  map[uint64]*conn
	byName map[string]*conn
	ns     map[string]*nsState
	drops  []drop

	wg sync.WaitGroup // the loop and commits in flight
}

type drop struct {
	c      *conn
	cause  error
	member bool
}

// Events of the loop.
type (
	evAdd struct {
		c    *conn
		host *placementv1.Host
	}
	evReport struct {
		c    *conn
		host *placementv1.Host
	}
	evClosed struct{ c *conn }
	evBatch  struct {
		ns  string
		gen uint64
	}
	evCommitted struct {
		ns      string
		version uint64
		cmd     command
		err     error
	}
	evPhaseTimeout struct {
		r   *round
		seq uint64
	}
	evState struct{ reply chan []NamespaceState }
)

func newTerm(s *Server) *term {
	ctx, cancel := context.WithCancelCause(context.Background())
	t := &term{
		s: s, ctx: ctx, cancel: cancel,
		events:  make(chan any, 256),
		started: time.Now(),
		conns:   map[uint64]*conn{},
		byName:  map[string]*conn{},
		ns:      map[string]*nsState{},
	}
	// Start from the replicated membership: every member gets
	// HeartbeatTimeout from now to reconnect.
	for _, name := range s.fsm.namespaces() {
		t.namespace(name)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.run()
	}()
	return t
}

// stop ends the term: every stream ends with cause.
func (t *term) stop(cause error) {
	t.cancel(cause)
	t.wg.Wait()
}

// cause is why the term ended.
func (t *term) cause() error {
	if err := context.Cause(t.ctx); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "placement: leadership changed")
}

// post hands ev to the loop; false once the term has ended.
func (t *term) post(ev any) bool {
	select {
	case t.events <- ev:
		return true
	case <-t.ctx.Done():
		return false
	}
}

func (t *term) run() {
	tick := time.NewTicker(max(t.s.opts.HeartbeatTimeout/5, 20*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			t.shutdown()
			return
		case ev := <-t.events:
			t.handle(ev)
		case now := <-tick.C:
			t.expire(now)
		}
		t.flushDrops()
	}
}

func (t *term) shutdown() {
	cause := t.cause()
	for _, n := range t.ns {
		if n.batchTimer != nil {
			n.batchTimer.Stop()
		}
		if n.round != nil && n.round.timer != nil {
			n.round.timer.Stop()
		}
	}
	for _, c := range t.conns {
		if c.round != nil && c.round.timer != nil {
			c.round.timer.Stop()
		}
		c.cancel(cause)
	}
	clear(t.conns)
}

func (t *term) namespace(name string) *nsState {
	n := t.ns[name]
	if n == nil {
		members, version := t.s.fsm.namespace(name)
		n = &nsState{
			name:    name,
			members: members,
			version: version,
			conns:   map[*conn]struct{}{},
			pending: map[string]*Member{},
		}
		n.table = buildTable(members, version, t.s.opts.ReplicationFactor)
		t.ns[name] = n
	}
	return n
}

func (t *term) handle(ev any) {
	now := time.Now()
	switch e := ev.(type) {
	case *evAdd:
		t.add(e.c, e.host, now)
	case *evReport:
		c := e.c
		if t.conns[c.id] != c {
			return
		}
		c.lastSeen = now
		switch op := e.host.GetOperation(); op {
		case placementv1.HostOperation_REPORT, placementv1.HostOperation_UNKNOWN:
			t.report(c, e.host)
		case placementv1.HostOperation_LOCK, placementv1.HostOperation_UPDATE, placementv1.HostOperation_UNLOCK:
			t.ack(c, op, e.host.GetVersion())
		}
	case *evClosed:
		t.dropConn(e.c, status.Error(codes.Canceled, "stream closed"), true)
	case *evBatch:
		n := t.ns[e.ns]
		if n == nil || n.batchGen != e.gen {
			return
		}
		n.batchTimer = nil
		if n.round == nil && !n.committing {
			t.flush(n)
		}
	case *evCommitted:
		t.committed(e)
	case *evPhaseTimeout:
		t.phaseTimeout(e.r, e.seq)
	case *evState:
		e.reply <- t.state()
	}
}

// add registers a new stream, sends it the current table unless a round
// is on (it gets the table when the round ends), and notes its actor
// types.
func (t *term) add(c *conn, h *placementv1.Host, now time.Time) {
	n := t.namespace(c.ns)
	if old := t.byName[c.key()]; old != nil {
		// The same sidecar reconnected before its old stream ended.
		t.dropConn(old, status.Error(codes.AlreadyExists, "placement: replaced by a newer stream of the same host"), false)
	}
	c.lastSeen = now
	t.conns[c.id] = c
	t.byName[c.key()] = c
	n.conns[c] = struct{}{}
	t.s.log.Debug("placement stream opened", "namespace", c.ns, "host", c.name, "appId", h.GetId(), "entities", h.GetEntities())
	t.report(c, h)
	if n.round == nil && !n.committing {
		t.startRound(n, []*conn{c}, true)
	}
}

// report takes a stream's report: when the actor types (or app id, port)
// it hosts differ from the membership, the change is queued for the next
// round. Reports that change nothing (heartbeats) cost no round.
func (t *term) report(c *conn, h *placementv1.Host) {
	entities := slices.Clone(h.GetEntities())
	slices.Sort(entities)
	entities = slices.Compact(entities)
	if len(entities) > 0 && entities[0] == "" {
		entities = entities[1:]
	}
	c.appID, c.port, c.load = h.GetId(), h.GetPort(), h.GetLoad()
	c.entities = entities
	n := t.namespace(c.ns)
	var want *Member
	if len(entities) > 0 {
		want = &Member{Name: c.name, AppID: c.appID, Namespace: c.ns, Entities: entities, Port: c.port, UpdatedAt: nowMillis()}
	}
	cur, queued := n.pending[c.name]
	if !queued {
		if m, ok := n.members[c.name]; ok {
			cur = &m
		}
	}
	switch {
	case want == nil && cur == nil:
		return
	case want != nil && cur != nil && want.sameTable(*cur):
		return
	}
	n.pending[c.name] = want
	t.armBatch(n)
}

// memberGone queues the removal of name from n's membership.
func (t *term) memberGone(n *nsState, name string) {
	cur, queued := n.pending[name]
	if queued && cur == nil {
		return
	}
	if _, ok := n.members[name]; !ok && !queued {
		return
	}
	n.pending[name] = nil
	t.armBatch(n)
}

func (t *term) armBatch(n *nsState) {
	if n.pendingSince.IsZero() {
		n.pendingSince = time.Now()
	}
	if n.batchTimer != nil || n.round != nil || n.committing {
		return // the round's end or the commit re-arms
	}
	delay := time.Until(n.pendingSince.Add(t.s.opts.BatchInterval))
	n.batchGen++
	gen, name := n.batchGen, n.name
	n.batchTimer = time.AfterFunc(max(delay, 0), func() { t.post(&evBatch{ns: name, gen: gen}) })
}

// flush commits the pending changes of n as one command; the round starts
// once it is committed.
func (t *term) flush(n *nsState) {
	cmd := command{Namespace: n.name}
	for _, name := range slices.Sorted(maps.Keys(n.pending)) {
		want := n.pending[name]
		cur, ok := n.members[name]
		switch {
		case want == nil && ok:
			cmd.Remove = append(cmd.Remove, name)
		case want != nil && (!ok || !cur.sameTable(*want)):
			cmd.Upsert = append(cmd.Upsert, *want)
		}
	}
	clear(n.pending)
	n.pendingSince = time.Time{}
	if len(cmd.Upsert) == 0 && len(cmd.Remove) == 0 {
		t.afterRound(n)
		return
	}
	n.committing = true
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		v, err := t.s.cons.apply(t.ctx, cmd)
		t.post(&evCommitted{ns: cmd.Namespace, version: v, cmd: cmd, err: err})
	}()
}

func (t *term) committed(e *evCommitted) {
	n := t.namespace(e.ns)
	n.committing = false
	if e.err != nil {
		t.s.log.Warn("placement could not commit a membership change; retrying", "namespace", e.ns, "error", e.err)
		// Put the changes back unless newer ones came meanwhile.
		for _, m := range e.cmd.Upsert {
			if _, ok := n.pending[m.Name]; !ok {
				n.pending[m.Name] = &m
			}
		}
		for _, name := range e.cmd.Remove {
			if _, ok := n.pending[name]; !ok {
				n.pending[name] = nil
			}
		}
		t.armBatch(n)
		return
	}
	n.members, n.version = t.s.fsm.namespace(e.ns)
	n.table = buildTable(n.members, n.version, t.s.opts.ReplicationFactor)
	t.s.log.Debug("placement membership committed", "namespace", e.ns, "version", n.version,
		"joined", len(e.cmd.Upsert), "left", len(e.cmd.Remove), "members", len(n.members))
	if len(n.conns) == 0 {
		t.afterRound(n)
		return
	}
	t.startRound(n, slices.Collect(maps.Keys(n.conns)), false)
}

// startRound starts disseminating n's current table to targets: a
// namespace round (catchup false) takes every target out of the catch-up
// round it may be in.
func (t *term) startRound(n *nsState, targets []*conn, catchup bool) {
	r := &round{ns: n, catchup: catchup, version: n.version, table: n.table, targets: map[*conn]bool{}, started: time.Now()}
	for _, c := range targets {
		if c.round != nil {
			t.leaveRound(c)
		}
		c.round = r
		r.targets[c] = false
	}
	if !catchup {
		n.round = r
	}
	t.sendPhase(r, opLock)
}

// sendPhase sends the phase's order to all targets at once: each stream
// has its own sender, so one slow sidecar delays no other.
func (t *term) sendPhase(r *round, phase string) {
	r.phase = phase
	r.seq++
	r.waiting = len(r.targets)
	o := &placementv1.PlacementOrder{Operation: phase, Version: r.version}
	if phase == opUpdate {
		o.Tables = r.table
	}
	for c := range r.targets {
		r.targets[c] = false
		select {
		case c.out <- o:
		default:
			t.drops = append(t.drops, drop{c, status.Error(codes.ResourceExhausted, "placement: the sidecar does not read its orders"), true})
		}
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	seq := r.seq
	r.timer = time.AfterFunc(t.s.opts.DisseminationTimeout, func() { t.post(&evPhaseTimeout{r: r, seq: seq}) })
}

func opOf(op placementv1.HostOperation) string {
	switch op {
	case placementv1.HostOperation_LOCK:
		return opLock
	case placementv1.HostOperation_UPDATE:
		return opUpdate
	case placementv1.HostOperation_UNLOCK:
		return opUnlock
	}
	return ""
}

// ack takes a stream's acknowledgement of a phase.
func (t *term) ack(c *conn, op placementv1.HostOperation, version uint64) {
	r := c.round
	if r == nil || r.done || opOf(op) != r.phase || version != r.version || r.targets[c] {
		return // stale or repeated
	}
	r.targets[c] = true
	r.waiting--
	if r.waiting == 0 {
		t.advance(r)
	}
}

// advance moves r to its next phase, or ends it after unlock.
func (t *term) advance(r *round) {
	switch r.phase {
	case opLock:
		t.sendPhase(r, opUpdate)
	case opUpdate:
		t.sendPhase(r, opUnlock)
	default:
		t.finish(r)
	}
}

func (t *term) finish(r *round) {
	r.done = true
	if r.timer != nil {
		r.timer.Stop()
	}
	for c := range r.targets {
		c.version, c.hasVersion, c.round = r.version, true, nil
	}
	if r.catchup {
		return
	}
	n := r.ns
	n.round = nil
	n.rounds++
	n.lastRound = time.Since(r.started)
	t.s.log.Info("placement table disseminated", "namespace", n.name, "version", r.version,
		"sidecars", len(r.targets), "members", len(n.members), "elapsed", n.lastRound.Round(time.Microsecond))
	t.afterRound(n)
}

// afterRound starts what waited for n's round: the next batch, and the
// current table for streams that do not have it.
func (t *term) afterRound(n *nsState) {
	if n.round != nil || n.committing {
		return
	}
	if len(n.pending) > 0 {
		t.armBatch(n)
	}
	for c := range n.conns {
		if c.round == nil && (!c.hasVersion || c.version != n.version) {
			t.startRound(n, []*conn{c}, true)
		}
	}
}

// leaveRound takes c out of its round, which moves on if c was the last
// one it waited for.
func (t *term) leaveRound(c *conn) {
	r := c.round
	c.round = nil
	if r == nil || r.done {
		return
	}
	if !r.targets[c] {
		r.waiting--
	}
	delete(r.targets, c)
	switch {
	case len(r.targets) == 0:
		t.finish(r)
	case r.waiting == 0:
		t.advance(r)
	}
}

func (t *term) phaseTimeout(r *round, seq uint64) {
	if r.done || r.seq != seq {
		return
	}
	t.s.log.Warn("placement dissemination timed out; dropping the sidecars that did not answer",
		"namespace", r.ns.name, "version", r.version, "phase", r.phase, "waiting", r.waiting)
	cause := status.Errorf(codes.DeadlineExceeded, "placement: no %s ack for version %d within %s", r.phase, r.version, t.s.opts.DisseminationTimeout)
	for c, acked := range r.targets {
		if !acked {
			t.drops = append(t.drops, drop{c, cause, true})
		}
	}
}

// expire drops streams that stopped reporting, and removes members that
// never came back to this leader.
func (t *term) expire(now time.Time) {
	timeout := t.s.opts.HeartbeatTimeout
	for _, c := range t.conns {
		if now.Sub(c.lastSeen) > timeout {
			t.drops = append(t.drops, drop{c, status.Errorf(codes.DeadlineExceeded, "placement: no report within %s", timeout), true})
		}
	}
	if now.Sub(t.started) <= timeout {
		return
	}
	for _, n := range t.ns {
		for name := range n.members {
			if t.byName[n.name+"\x00"+name] == nil {
				t.memberGone(n, name)
			}
		}
	}
}

func (t *term) flushDrops() {
	for len(t.drops) > 0 {
		d := t.drops[0]
		t.drops = t.drops[1:]
		t.dropConn(d.c, d.cause, d.member)
	}
}

// dropConn ends c's stream with cause; member says whether its sidecar
// left the membership (not when a newer stream replaced it).
func (t *term) dropConn(c *conn, cause error, member bool) {
	if t.conns[c.id] != c {
		return
	}
	delete(t.conns, c.id)
	n := t.ns[c.ns]
	delete(n.conns, c)
	if t.byName[c.key()] == c {
		delete(t.byName, c.key())
		if member {
			t.memberGone(n, c.name)
		}
	}
	if c.round != nil {
		t.leaveRound(c)
	}
	c.cancel(cause)
	t.s.log.Debug("placement stream closed", "namespace", c.ns, "host", c.name, "cause", cause)
}

// buildTable is the PlacementTables of members: per actor type the hosts
// serving it, no virtual nodes (sidecars compute them).
func buildTable(members map[string]Member, version uint64, rf int) *placementv1.PlacementTables {
	entries := map[string]*placementv1.PlacementTable{}
	for _, m := range members {
		for _, typ := range m.Entities {
			e := entries[typ]
			if e == nil {
				e = &placementv1.PlacementTable{LoadMap: map[string]*placementv1.Host{}}
				entries[typ] = e
			}
			e.LoadMap[m.Name] = &placementv1.Host{Name: m.Name, Id: m.AppID, Port: m.Port, Namespace: m.Namespace}
		}
	}
	return &placementv1.PlacementTables{
		Entries:           entries,
		Version:           strconv.FormatUint(version, 10),
		ReplicationFactor: int64(rf),
	}
}
