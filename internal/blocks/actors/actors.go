// Package actors is the virtual actor runtime of the sidecar: it routes
// actor calls to the sidecar that owns the actor id under the placement
// table (calling the app when that is this one, forwarding over the
// internal gRPC port otherwise), gives each actor turn-based concurrency
// (one call at a time, FIFO, with Dapr-Reentrancy-Id reentrancy when the
// app enables it), deactivates idle actors and the actors a new table moves
// away, keeps actor state in the state store marked actorStateStore, runs
// timers in memory and reminders persisted one record per reminder.
//
// Placement is an interface (Placement, Hooks): the sidecar wires the
// placement client, tests a fake. The app is reached through App (HTTP
// callbacks, as Dapr's AppCallback has no actor methods), other sidecars
// through Remote (internal gRPC CallActor).
//
// Lifecycle: New (no goroutines), SetStateStore while components load,
// Start once the APIs serve (reads /dapr/config when the app is ready,
// then runs the placement), Close on shutdown (deactivates every actor).
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// Options configure a Block.
type Options struct {
	// AppID prefixes the actor state and reminder keys.
	AppID string
	// Address is this sidecar's internal gRPC address as the placement
	// table names it ("127.0.0.1:47300").
	Address string
	// App is the HTTP app channel; nil when there is no HTTP app (the
	// sidecar can then call actors but hosts none).
	App App
	// Remote calls the other sidecars.
	Remote Remote
	// Placement creates the placement; nil disables actors, as daprd does
	// without --placement-host-address (ERR_ACTOR_NO_PLACEMENT).
	Placement NewPlacement
	// MaxBodySize bounds the app's answers.
	MaxBodySize int64
	Logger      *slog.Logger

	// ReadyTimeout is how long an API call waits for the runtime to be
	// ready (the app's configuration read and a first table received).
	ReadyTimeout time.Duration
	// RetryTimeout is how long a call keeps retrying an actor that is
	// moving between hosts (stale tables, an owner that went away).
	RetryTimeout time.Duration
	// LockTimeout ends a placement lock no unlock follows.
	LockTimeout time.Duration
	// NotFoundTimeout is how long a call waits for a table that has a
	// host for its actor type (daprd retries 5 times a second apart).
	NotFoundTimeout time.Duration
	// Resiliency supplies the actor types' policies (targets.actors): the
	// pre-lock policy around each call, the post-lock one around the
	// call to the app. nil applies none.
	Resiliency *resiliency.Provider
	// Metrics receives activations, deactivations, firings and table
	// operations; nil records nothing.
	Metrics Metrics
}

// Defaults of Options.
const (
	DefaultReadyTimeout = 10 * time.Second
	DefaultRetryTimeout = 30 * time.Second
	DefaultLockTimeout  = 5 * time.Second
	// DefaultNotFoundTimeout is Options.NotFoundTimeout's default.
	DefaultNotFoundTimeout = 5 * time.Second
	// deactivateTimeout bounds the app's answer to DELETE /actors/….
	deactivateTimeout = 10 * time.Second
)

// Remote calls other sidecars' internal gRPC service. Implementations
// mark retriable failures with ErrActorMoved or ErrUnreachable and report
// other failures the owner answered as *RemoteError.
type Remote interface {
	CallActor(ctx context.Context, addr string, req *InvokeRequest) (*InvokeResponse, error)
	// SyncReminder tells the owner of an actor that one of its reminders
	// was created, changed or deleted elsewhere.
	SyncReminder(ctx context.Context, addr string, ref ReminderRef) error
}

var (
	// ErrActorMoved is the owner's sidecar answering that, by its table,
	// it does not own the actor (one of the tables is stale).
	ErrActorMoved = errors.New("remote actor moved")
	// ErrUnreachable is a sidecar that cannot be reached.
	ErrUnreachable = errors.New("the actor's host cannot be reached")
)

// RemoteError is a failure the owner's sidecar reported for a call.
type RemoteError struct{ Message string }

func (e *RemoteError) Error() string { return e.Message }

// Block is the actor runtime of one sidecar.
type Block struct {
	appID   string
	address string
	app     App
	remote  Remote
	log     *slog.Logger
	maxBody int64
	res     *resiliency.Provider
	mx      Metrics

	readyTimeout    time.Duration
	retryTimeout    time.Duration
	notFoundTimeout time.Duration

	newPlacement NewPlacement
	// placement and placementErr are set by Start before started.
	placement    Placement
	placementErr error
	started      atomic.Bool
	gate         *gate
	table        *table
	sched        *scheduler
	rem          *reminderState

	mu         sync.RWMutex
	cfg        hostConfig
	registered bool
	store      *actorStore
	storeErr   error

	// ready is closed once the configuration is known and a first table
	// applied.
	ready     chan struct{}
	readyOnce sync.Once
	tableSeen atomic.Bool
	closed    atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// loadKick asks for a reminder load pass.
	loadKick chan struct{}
}

// New returns a block; nothing runs until Start.
func New(o Options) *Block {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodySize <= 0 {
		o.MaxBodySize = 4 << 20
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = DefaultRetryTimeout
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.NotFoundTimeout <= 0 {
		o.NotFoundTimeout = DefaultNotFoundTimeout
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Block{
		appID: o.AppID, address: o.Address, app: o.App, remote: o.Remote, log: o.Logger, maxBody: o.MaxBodySize,
		res: o.Resiliency, mx: o.Metrics,
		readyTimeout: o.ReadyTimeout, retryTimeout: o.RetryTimeout, notFoundTimeout: o.NotFoundTimeout,
		newPlacement: o.Placement,
		gate:         newGate(o.LockTimeout), table: newTable(), sched: newScheduler(),
		rem:   newReminderState(),
		cfg:   hostConfig{types: map[string]TypeConfig{}, scanInterval: DefaultScanInterval},
		ready: make(chan struct{}), ctx: ctx, cancel: cancel,
		loadKick: make(chan struct{}, 1),
	}
	b.table.activated = o.Metrics.ActorActivated
	if o.Placement == nil {
		b.placementErr = apierr.ActorNoPlacement.New("placement service is not configured")
	}
	return b
}

// Enabled reports whether actors are on (a placement is configured).
func (b *Block) Enabled() bool { return b.newPlacement != nil }

// SetStateStore registers the actor state store: the state component with
// metadata actorStateStore "true". There must be exactly one; a second
// disables actor state, reminders and hosting, as daprd refuses to start
// with two.
func (b *Block) SetStateStore(name string, s cstate.Store) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store != nil {
		b.storeErr = fmt.Errorf("more than one state store has actorStateStore \"true\" (%s and %s): actors need exactly one", b.store.name, name)
		b.log.Error("actor state store is ambiguous; actor state, reminders and hosting are disabled", "stores", []string{b.store.name, name})
		return
	}
	b.store = newActorStore(name, s)
}

// Start begins the runtime in the background: it creates the placement
// for this sidecar's internal address (known once the internal server
// listens; empty keeps Options.Address), waits for the app, reads its
// actor configuration, starts the idle scanner and the reminder loop, and
// runs the placement.
func (b *Block) Start(address string) {
	if b.newPlacement == nil || b.closed.Load() {
		return
	}
	if address != "" {
		b.address = address
	}
	p, err := b.newPlacement(b.address, b)
	if err != nil {
		b.placementErr = apierr.ActorNoPlacement.Wrap(err, "placement service is not available")
		b.log.Error("actors are disabled: the placement cannot be used", "error", err)
		b.started.Store(true)
		return
	}
	b.placement = p
	b.started.Store(true)
	b.wg.Go(b.sched.run)
	b.wg.Go(b.run)
}

// pl returns the placement once Start created it (nil before, or when it
// failed).
func (b *Block) pl() Placement {
	if !b.started.Load() {
		return nil
	}
	return b.placement
}

// Close deactivates every active actor (bounded by ctx), stops the
// placement and every goroutine of the block.
func (b *Block) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Stop the placement, the loops and the firings first: nothing may
	// activate an actor while the active ones are deactivated.
	b.cancel()
	b.sched.stop()
	b.wg.Wait()
	// Stop every actor at once (each waits up to its drain timeout for
	// its current call), then tell the app, a few DELETEs at a time and
	// only while ctx lasts: a host with many actors must not hold the
	// shutdown past its grace period, nor flood the app.
	tells := make(chan func(context.Context), closeWorkers)
	var workers sync.WaitGroup
	var untold atomic.Int64
	for range closeWorkers {
		workers.Go(func() {
			for tell := range tells {
				if ctx.Err() != nil {
					untold.Add(1)
				}
				tell(ctx)
			}
		})
	}
	var wg sync.WaitGroup
	for _, a := range b.table.all() {
		wg.Go(func() {
			if tell := b.stop(ctx, a, false, b.drainTimeout(a.typ)); tell != nil {
				tells <- tell
			}
		})
	}
	wg.Wait()
	close(tells)
	workers.Wait()
	if n := untold.Load(); n > 0 {
		b.log.Warn("shutdown grace period over: the app was not told of some actors' deactivation", "actors", n)
	}
	return nil
}

// closeWorkers is how many deactivations Close tells the app of at once.
const closeWorkers = 16

// run reads the configuration and runs the placement until Close.
func (b *Block) run() {
	ctx := b.ctx
	types := b.register(ctx)
	if ctx.Err() != nil {
		return
	}
	if len(types) > 0 {
		b.wg.Go(func() { b.scanIdle(ctx) })
		b.wg.Go(func() { b.reminderLoop(ctx) })
	}
	b.log.Info("actor runtime started", "types", types, "address", b.address)
	for ctx.Err() == nil {
		err := b.placement.Run(ctx, types)
		if ctx.Err() != nil {
			return
		}
		b.log.Error("placement stopped; restarting", "error", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// register reads the app's actor configuration (retrying until the app
// answers, since an app still starting must not lose its actors) and
// returns the types to host.
func (b *Block) register(ctx context.Context) []string {
	var cfg hostConfig
	if b.app != nil {
		if err := b.app.WaitReady(ctx); err != nil {
			return nil
		}
		delay := 50 * time.Millisecond
		for attempt := 1; ; attempt++ {
			body, found, err := b.fetchConfig(ctx)
			if err == nil {
				if found {
					if cfg, err = parseAppConfig(body, b.log); err != nil {
						b.log.Error("the app's /dapr/config is not valid JSON; it hosts no actors", "error", err)
					}
				}
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			if attempt == 1 || attempt%20 == 0 {
				b.log.Warn("cannot read the app's actor configuration yet; retrying", "error", err, "attempt", attempt)
			}
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			delay = min(delay*2, 2*time.Second)
		}
	}
	if cfg.types == nil {
		cfg = hostConfig{types: map[string]TypeConfig{}, scanInterval: DefaultScanInterval}
	}
	b.mu.Lock()
	if len(cfg.order) > 0 && (b.store == nil || b.storeErr != nil) {
		reason := "no state store has actorStateStore \"true\""
		if b.storeErr != nil {
			reason = b.storeErr.Error()
		}
		b.log.Error("the app's actor types are not hosted: "+reason, "types", cfg.order)
		cfg = hostConfig{types: map[string]TypeConfig{}, scanInterval: cfg.scanInterval}
	}
	b.cfg = cfg
	b.registered = true
	b.mu.Unlock()
	b.maybeReady()
	return slices.Clone(cfg.order)
}

func (b *Block) maybeReady() {
	b.mu.RLock()
	reg := b.registered
	b.mu.RUnlock()
	if reg && b.tableSeen.Load() {
		b.readyOnce.Do(func() { close(b.ready) })
	}
}

// waitReady waits (bounded by ReadyTimeout) until the runtime can serve
// calls.
func (b *Block) waitReady(ctx context.Context) error {
	if b.newPlacement == nil {
		return b.placementErr
	}
	if b.started.Load() && b.placement == nil {
		return b.placementErr
	}
	if b.closed.Load() {
		return apierr.ActorRuntimeClosed.New("actor runtime is closed")
	}
	select {
	case <-b.ready:
		return nil
	default:
	}
	t := time.NewTimer(b.readyTimeout)
	defer t.Stop()
	select {
	case <-b.ready:
		return nil
	case <-t.C:
		return apierr.ActorRuntimeNotFound.New("the actor runtime is not ready: no placement table received yet (is the placement service at --placement-host-address running?)")
	case <-ctx.Done():
		return apierr.From(ctx.Err())
	}
}

// typeConfig returns the configuration of a type this host serves.
func (b *Block) typeConfig(typ string) (TypeConfig, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	c, ok := b.cfg.types[typ]
	return c, ok
}

// HostedTypes lists the actor types this sidecar serves.
func (b *Block) HostedTypes() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Clone(b.cfg.order)
}

func (b *Block) drainTimeout(typ string) time.Duration {
	c, ok := b.typeConfig(typ)
	if !ok {
		return DefaultDrainTimeout
	}
	if !c.Drain {
		return 0
	}
	return c.DrainTimeout
}

// OnLock implements Hooks.
func (b *Block) OnLock() {
	b.mx.ActorTableOperation("lock")
	b.gate.lock()
}

// OnUnlock implements Hooks.
func (b *Block) OnUnlock() {
	b.mx.ActorTableOperation("unlock")
	b.gate.unlock()
}

// OnUpdate implements Hooks: actors and reminders that moved away stop
// here before calls resume, and the reminders that moved here are loaded.
// The drain of a moved actor is capped at maxRebalanceDrain, as daprd
// clamps it, so that a round never outlasts the placement's dissemination
// timeout; the app hears of the deactivation right after, in the
// background.
func (b *Block) OnUpdate(version uint64) {
	b.mx.ActorTableOperation("update")
	var wg sync.WaitGroup
	for _, a := range b.table.all() {
		if addr, ok := b.placement.Lookup(a.typ, a.id); ok && addr == b.address {
			continue
		}
		wg.Go(func() {
			tell := b.stop(b.ctx, a, false, min(b.drainTimeout(a.typ), maxRebalanceDrain))
			if tell != nil {
				b.mx.ActorRebalanced(a.typ)
				// Told even if the sidecar starts shutting down meanwhile.
				b.wg.Go(func() { tell(context.WithoutCancel(b.ctx)) })
			}
		})
	}
	b.unscheduleMoved()
	wg.Wait()
	b.tableSeen.Store(true)
	b.gate.tableChanged()
	b.maybeReady()
	b.kickReminderLoad()
	b.log.Debug("placement table applied", "version", version)
}

// maxRebalanceDrain bounds how long a table update waits for the calls of
// an actor that moved away (daprd's default drainOngoingCallTimeout).
const maxRebalanceDrain = 2 * time.Second

// deactivate ends an activation and tells the app; with idleOnly, an
// activation in use is left alone (false).
func (b *Block) deactivate(ctx context.Context, a *actor, idleOnly bool, drain time.Duration) bool {
	tell := b.stop(ctx, a, idleOnly, drain)
	if tell == nil {
		return false
	}
	tell(ctx)
	return true
}

// stop ends an activation: no new turn starts, the current one gets up to
// drain to finish, and its timers stop. It returns the function that tells
// the app (DELETE /actors/{type}/{id}, bounded by its ctx and
// deactivateTimeout; not at all once ctx is done) and releases the actor's
// key for a new activation; nil when the activation was left alone.
func (b *Block) stop(ctx context.Context, a *actor, idleOnly bool, drain time.Duration) func(context.Context) {
	drained, ok := a.kill(idleOnly)
	if !ok {
		return nil
	}
	done := b.table.remove(a)
	for _, t := range a.takeTimers() {
		b.sched.cancel(t.job)
	}
	select {
	case <-drained:
	default:
		if drain > 0 {
			t := time.NewTimer(drain)
			select {
			case <-drained:
			case <-t.C:
				b.log.Warn("actor still busy after its drain timeout; deactivating it anyway", "type", a.typ, "id", a.id, "timeout", drain)
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	return func(ctx context.Context) {
		defer done()
		if b.app == nil || ctx.Err() != nil {
			return
		}
		dctx, cancel := context.WithTimeout(ctx, deactivateTimeout)
		defer cancel()
		if err := b.deactivateApp(dctx, a.typ, a.id); err != nil {
			b.mx.ActorDeactivated(a.typ, failReason(err))
			b.log.Warn("the app failed to deactivate an actor", "type", a.typ, "id", a.id, "error", err)
		} else {
			b.mx.ActorDeactivated(a.typ, "")
			b.log.Debug("actor deactivated", "type", a.typ, "id", a.id)
		}
	}
}

// scanIdle deactivates actors idle longer than their type's idle timeout,
// every actorScanInterval.
func (b *Block) scanIdle(ctx context.Context) {
	b.mu.RLock()
	every := b.cfg.scanInterval
	b.mu.RUnlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		idle := b.table.idle(time.Now(), func(typ string) time.Duration {
			c, ok := b.typeConfig(typ)
			if !ok {
				return 0
			}
			return c.IdleTimeout
		})
		for _, a := range idle {
			if b.deactivate(context.WithoutCancel(ctx), a, true, 0) {
				b.log.Debug("idle actor deactivated", "type", a.typ, "id", a.id)
			}
		}
	}
}

// TypeCount is the number of active actors of a type.
type TypeCount struct {
	Type  string
	Count int
}

// Status is what the metadata API reports about the actor runtime.
type Status struct {
	// RuntimeStatus is daprd's: DISABLED, INITIALIZING or RUNNING.
	RuntimeStatus string
	ActiveActors  []TypeCount
	HostReady     bool
	// Placement is daprd's "placement: connected" / "placement:
	// disconnected".
	Placement string
	// TableVersion is the placement table version applied last.
	TableVersion uint64
	HostedTypes  []string
}

// Status reports the runtime's state.
func (b *Block) Status() Status {
	if b.newPlacement == nil || (b.started.Load() && b.placement == nil) {
		return Status{RuntimeStatus: "DISABLED", Placement: "placement: disconnected"}
	}
	if b.pl() == nil {
		return Status{RuntimeStatus: "INITIALIZING"}
	}
	b.mu.RLock()
	reg := b.registered
	types := slices.Clone(b.cfg.order)
	b.mu.RUnlock()
	if !reg {
		return Status{RuntimeStatus: "INITIALIZING"}
	}
	s := Status{
		RuntimeStatus: "RUNNING",
		ActiveActors:  b.table.counts(),
		Placement:     "placement: connected",
		TableVersion:  b.placement.Version(),
		HostedTypes:   types,
	}
	s.HostReady = b.placement.Connected() && b.tableSeen.Load()
	if !b.placement.Connected() {
		s.Placement = "placement: disconnected"
	}
	return s
}

// validateName applies daprd's rules for actor types, ids and reminder and
// timer names, plus "||" (the key separator) which would make state keys
// ambiguous.
func validateName(what, name string) error {
	switch {
	case name == "":
		return apierr.BadRequest.New("%s is empty", what)
	case strings.ContainsAny(name, "#?\x00/\\"):
		return apierr.BadRequest.New("invalid %s: name contains forbidden character: %q", what, name)
	case strings.Contains(name, "||"):
		return apierr.BadRequest.New("invalid %s: name contains \"||\": %q", what, name)
	case name == "." || name == "..":
		return apierr.BadRequest.New("invalid %s: name is a path traversal sequence: %q", what, name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f {
			return apierr.BadRequest.New("invalid %s: name contains control character at position %d: %q", what, i, name)
		}
	}
	return nil
}

func validateActor(typ, id string) error {
	if err := validateName("actorType", typ); err != nil {
		return err
	}
	return validateName("actorId", id)
}
