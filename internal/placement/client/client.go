// Package client is the sidecar's side of the placement protocol: it keeps
// one stream to the placement leader, reports the sidecar (host:port of
// its internal gRPC server, app id, namespace, actor types) every second,
// and applies the tables the leader disseminates, calling the actor
// runtime back at each phase:
//
//	OnLock(v)            a new table is coming: hold new actor activations
//	                     and lookups (calls already running go on);
//	OnUpdate(tables, v)  the new table: deactivate (after draining) the
//	                     actors this sidecar no longer owns; the ack is sent
//	                     when it returns;
//	OnUnlock(v)          every sidecar has the new table: resume.
//
// Callbacks run one at a time, in that order for each version. A lock that
// is not followed by an unlock within LockTimeout, or a stream lost while
// locked, unlocks locally with the table the sidecar has, so actors never
// stall behind an unreachable placement.
//
// Addresses are tried in turn: a follower refuses the stream ("not a
// leader") and the client moves on at once; after a full turn of failures
// it backs off exponentially (MinBackoff … MaxBackoff, with jitter), so an
// unreachable placement costs no busy loop.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/placement/hashing"
	"github.com/mecha-dev/mecha/internal/placement/ring"
)

// Handler is what the actor runtime implements to follow the tables.
type Handler interface {
	// OnLock announces table version (the one about to come).
	OnLock(version uint64)
	// OnUpdate installs tables at version. It may block to drain the
	// actors the sidecar loses, but must return well within the
	// placement's dissemination timeout (3s by default).
	OnUpdate(tables *ring.Tables, version uint64)
	// OnUnlock ends the round of version.
	OnUnlock(version uint64)
}

// HandlerFuncs is a Handler of functions; nil ones are skipped.
type HandlerFuncs struct {
	Lock   func(version uint64)
	Update func(tables *ring.Tables, version uint64)
	Unlock func(version uint64)
}

// OnLock calls Lock.
func (h HandlerFuncs) OnLock(v uint64) {
	if h.Lock != nil {
		h.Lock(v)
	}
}

// OnUpdate calls Update.
func (h HandlerFuncs) OnUpdate(t *ring.Tables, v uint64) {
	if h.Update != nil {
		h.Update(t, v)
	}
}

// OnUnlock calls Unlock.
func (h HandlerFuncs) OnUnlock(v uint64) {
	if h.Unlock != nil {
		h.Unlock(v)
	}
}

// Defaults.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultLockTimeout       = 5 * time.Second
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 3 * time.Second
)

// Options configure a Client.
type Options struct {
	// Addresses are the placement nodes, host:port (the sidecar's
	// comma-separated --placement-host-address, see ParseAddresses).
	Addresses []string
	// Name is this sidecar's host:port that other sidecars call actors on
	// (its internal gRPC server). Required.
	Name string
	// AppID and Namespace identify the sidecar.
	AppID     string
	Namespace string
	// Entities are the actor types the app hosts (none: the sidecar only
	// calls actors; it never causes a dissemination round).
	Entities []string
	// Port is the internal gRPC port (default: the port in Name).
	Port int64
	// Load, when set, is reported with each heartbeat (e.g. the number of
	// active actors).
	Load func() int64
	// HeartbeatInterval defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// LockTimeout defaults to DefaultLockTimeout.
	LockTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between connection turns.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// DialOptions are added to the gRPC dial (default: plaintext).
	DialOptions []grpc.DialOption
	// Handler is called at each phase (may be nil).
	Handler Handler
	Logger  *slog.Logger
}

// ParseAddresses splits a comma-separated address list, dropping blanks.
func ParseAddresses(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Client follows the placement tables for one sidecar.
type Client struct {
	opts  Options
	log   *slog.Logger
	cache *hashing.Cache

	mu        sync.Mutex
	entities  []string
	tables    *ring.Tables
	version   uint64
	locked    bool
	lockSeq   uint64
	lockTimer *time.Timer
	addr      string
	changed   chan struct{} // closed and replaced at every change
	ready     chan struct{} // closed at the first unlock
	conns     map[string]*grpc.ClientConn
	warned    map[string]string // address → refusal last logged

	cbMu      sync.Mutex // one callback at a time
	reportNow chan struct{}

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a client that has not connected yet.
func New(opts Options) (*Client, error) {
	if opts.Name == "" {
		return nil, errors.New("placement client: Name (host:port of the internal gRPC server) is required")
	}
	if len(opts.Addresses) == 0 {
		return nil, errors.New("placement client: no placement address")
	}
	if opts.Port == 0 {
		if _, p, err := net.SplitHostPort(opts.Name); err == nil {
			opts.Port, _ = strconv.ParseInt(p, 10, 64)
		}
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Handler == nil {
		opts.Handler = HandlerFuncs{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		opts:      opts,
		log:       log,
		cache:     hashing.NewCache(),
		entities:  slices.Clone(opts.Entities),
		changed:   make(chan struct{}),
		ready:     make(chan struct{}),
		conns:     map[string]*grpc.ClientConn{},
		warned:    map[string]string{},
		reportNow: make(chan struct{}, 1),
	}, nil
}

// Start connects in the background until Close.
func (c *Client) Start() {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if c.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// Run reports the sidecar with actorTypes (replacing Options.Entities)
// and follows the tables until ctx ends, then returns nil; an error only
// when the client already runs. It is Start for a caller that owns the
// goroutine.
func (c *Client) Run(ctx context.Context, actorTypes []string) error {
	c.runMu.Lock()
	if c.done != nil {
		c.runMu.Unlock()
		return errors.New("placement client: already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.cancel, c.done = cancel, make(chan struct{})
	c.runMu.Unlock()
	defer close(c.done)
	c.mu.Lock()
	c.entities = slices.Clone(actorTypes)
	c.mu.Unlock()
	c.run(ctx)
	c.closeConns()
	return nil
}

// Close stops the client and closes its connections.
func (c *Client) Close() error {
	c.runMu.Lock()
	cancel, done := c.cancel, c.done
	c.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return c.closeConns()
}

// closeConns closes the gRPC connections.
func (c *Client) closeConns() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for a, cc := range c.conns {
		errs = append(errs, cc.Close())
		delete(c.conns, a)
	}
	return errors.Join(errs...)
}

// Lookup returns the host:port (internal gRPC) of the sidecar that owns
// the actor under the tables last received; ok is false when no host
// serves actorType (or no table came yet). It is cheap: a hash and a
// binary search, no call.
func (c *Client) Lookup(actorType, actorID string) (host string, ok bool) {
	return c.Tables().Lookup(actorType, actorID)
}

// Connected reports whether the client has a stream to the placement
// leader (one that sent it an order).
func (c *Client) Connected() bool { return c.Address() != "" }

// Tables returns the tables last received (nil before the first).
func (c *Client) Tables() *ring.Tables {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tables
}

// Version is the version of the tables last received (0 before the
// first).
func (c *Client) Version() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// Locked reports whether a round is between lock and unlock.
func (c *Client) Locked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.locked
}

// Address is the placement address the client is connected to ("" when
// it has no stream that received an order).
func (c *Client) Address() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Ready is closed once the first round has completed (unlock).
func (c *Client) Ready() <-chan struct{} { return c.ready }

// WaitVersion waits until the client holds tables of version ≥ v and is
// unlocked, or ctx ends.
func (c *Client) WaitVersion(ctx context.Context, v uint64) error {
	for {
		c.mu.Lock()
		ok := c.tables != nil && c.version >= v && !c.locked
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("placement: waiting for table version %d (have %d): %w", v, c.Version(), ctx.Err())
		case <-ch:
		}
	}
}

// SetEntities changes the actor types reported, and reports them at once.
func (c *Client) SetEntities(entities []string) {
	c.mu.Lock()
	c.entities = slices.Clone(entities)
	c.mu.Unlock()
	select {
	case c.reportNow <- struct{}{}:
	default:
	}
}

// notifyLocked wakes WaitVersion; c.mu is held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Client) report() *placementv1.Host {
	c.mu.Lock()
	entities := slices.Clone(c.entities)
	c.mu.Unlock()
	h := &placementv1.Host{
		Name:      c.opts.Name,
		Port:      c.opts.Port,
		Entities:  entities,
		Id:        c.opts.AppID,
		Namespace: c.opts.Namespace,
		Operation: placementv1.HostOperation_REPORT,
	}
	if c.opts.Load != nil {
		h.Load = c.opts.Load()
	}
	return h
}

func (c *Client) run(ctx context.Context) {
	addrs := c.opts.Addresses
	failedTurns, failures := 0, 0
	for i := 0; ; i++ {
		addr := addrs[i%len(addrs)]
		got, err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if got {
			failures, failedTurns = 0, 0
		} else {
			failures++
		}
		c.logSessionEnd(addr, got, err)
		var wait time.Duration
		switch {
		case got:
			// A leader went away: try the next node at once.
		case failures%len(addrs) == 0:
			failedTurns++
			wait = c.opts.MinBackoff << min(failedTurns-1, 10)
			wait = min(wait, c.opts.MaxBackoff)
			wait = wait/2 + rand.N(wait/2+1)
		default:
			wait = c.opts.MinBackoff / 4
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

func (c *Client) logSessionEnd(addr string, got bool, err error) {
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		c.log.Debug("placement node is not the leader; trying the next", "address", addr)
		return
	}
	if got {
		c.mu.Lock()
		delete(c.warned, addr)
		c.mu.Unlock()
	}
	if hint := refusalHint(err); hint != "" {
		// A refusal repeats at every retry: say it once per address
		// until a session succeeds or the reason changes.
		c.mu.Lock()
		seen := c.warned[addr] == hint
		c.warned[addr] = hint
		c.mu.Unlock()
		if !seen {
			c.log.Warn("placement refused the connection; actors are unavailable until it is fixed", "address", addr, "reason", hint, "error", err)
		}
		return
	}
	if got {
		c.log.Warn("placement stream lost; reconnecting", "address", addr, "error", err)
		return
	}
	c.log.Debug("placement unreachable", "address", addr, "error", err)
}

// refusalHint explains an error that retrying will not cure: a mismatch
// of TLS between the sidecar and the placement, or a refusal of the
// sidecar's identity; "" for any other error.
func refusalHint(err error) string {
	if err == nil {
		return ""
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	switch {
	case st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied:
		return "the placement refused this sidecar: " + msg
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "this sidecar uses mTLS but the placement serves plaintext: run the placement with mTLS (a control plane that hosts the CA) or turn mTLS off for this sidecar"
	case strings.Contains(msg, "the placement presented"):
		return "the placement's certificate does not carry the placement identity: " + msg
	case strings.Contains(msg, "authentication handshake failed"),
		strings.Contains(msg, "tls: certificate required"),
		strings.Contains(msg, "tls: bad certificate"),
		strings.Contains(msg, "tls: unknown certificate"):
		return "the TLS handshake with the placement failed (a certificate from another CA, or none): " + msg
	}
	return ""
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[addr]; cc != nil {
		return cc, nil
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}, c.opts.DialOptions...)
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// session runs one stream to addr until it fails; got says whether it
// received any order (it reached the leader).
func (c *Client) session(ctx context.Context, addr string) (got bool, err error) {
	cc, err := c.conn(addr)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := placementv1.NewPlacementClient(cc).ReportDaprStatus(sctx)
	if err != nil {
		return false, err
	}
	var sendMu sync.Mutex
	send := func(h *placementv1.Host) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(h)
	}
	if err := send(c.report()); err != nil {
		return false, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(c.opts.HeartbeatInterval)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			case <-c.reportNow:
			}
			if err := send(c.report()); err != nil {
				cancel()
				return
			}
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
		c.mu.Lock()
		c.addr = ""
		c.notifyLocked()
		c.mu.Unlock()
		c.unlockLocally(0, "the placement stream ended")
	}()

	var sessionVersion uint64
	for {
		o, err := stream.Recv()
		if err != nil {
			return got, err
		}
		if !got {
			got = true
			c.mu.Lock()
			c.addr = addr
			c.notifyLocked()
			c.mu.Unlock()
			c.log.Info("connected to the placement leader", "address", addr)
		}
		ack, err := c.apply(o, &sessionVersion)
		if err != nil {
			return got, err
		}
		if err := send(ack); err != nil {
			return got, err
		}
	}
}

// apply carries out one order and returns its ack. Within one stream the
// version never goes back; a new stream may start lower (a standalone
// placement that restarted counts from scratch) and the sidecar follows.
func (c *Client) apply(o *placementv1.PlacementOrder, sessionVersion *uint64) (*placementv1.Host, error) {
	v := o.GetVersion()
	if v == 0 {
		//nolint:staticcheck // older placements send the version only in the tables.
		v, _ = strconv.ParseUint(o.GetTables().GetVersion(), 10, 64)
	}
	if v < *sessionVersion {
		return nil, fmt.Errorf("placement: %s for version %d after version %d", o.GetOperation(), v, *sessionVersion)
	}
	*sessionVersion = v
	var op placementv1.HostOperation
	h := c.opts.Handler
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	switch o.GetOperation() {
	case "lock":
		op = placementv1.HostOperation_LOCK
		c.lock(v)
	case "update":
		op = placementv1.HostOperation_UPDATE
		c.lock(v) // an update without its lock still locks first
		t := ring.BuildCached(o.GetTables(), v, c.cache)
		c.mu.Lock()
		c.tables, c.version = t, v
		c.notifyLocked()
		c.mu.Unlock()
		h.OnUpdate(t, v)
	case "unlock":
		op = placementv1.HostOperation_UNLOCK
		c.mu.Lock()
		was := c.locked
		c.locked = false
		c.lockSeq++
		if c.lockTimer != nil {
			c.lockTimer.Stop()
		}
		c.notifyLocked()
		c.mu.Unlock()
		if was {
			h.OnUnlock(v)
		}
		c.markReady()
	default:
		return nil, fmt.Errorf("placement: unknown operation %q", o.GetOperation())
	}
	return &placementv1.Host{
		Name:      c.opts.Name,
		Id:        c.opts.AppID,
		Namespace: c.opts.Namespace,
		Operation: op,
		Version:   &v,
	}, nil
}

// lock enters the locked state for version v (once per round) and arms
// the local unlock; c.cbMu is held.
func (c *Client) lock(v uint64) {
	c.mu.Lock()
	was := c.locked
	c.locked = true
	c.lockSeq++
	seq := c.lockSeq
	if c.lockTimer != nil {
		c.lockTimer.Stop()
	}
	c.lockTimer = time.AfterFunc(c.opts.LockTimeout, func() { c.unlockLocally(seq, "no unlock within the lock timeout") })
	c.notifyLocked()
	c.mu.Unlock()
	if !was {
		c.opts.Handler.OnLock(v)
	}
}

// unlockLocally ends a lock the placement did not end: for the lock armed
// with seq (0: any).
func (c *Client) unlockLocally(seq uint64, why string) {
	c.cbMu.Lock()
	defer c.cbMu.Unlock()
	c.mu.Lock()
	if !c.locked || (seq != 0 && seq != c.lockSeq) {
		c.mu.Unlock()
		return
	}
	c.locked = false
	c.lockSeq++
	if c.lockTimer != nil {
		c.lockTimer.Stop()
	}
	v := c.version
	c.notifyLocked()
	c.mu.Unlock()
	c.log.Warn("unlocking the actor table without the placement", "reason", why, "version", v)
	c.opts.Handler.OnUnlock(v)
}

func (c *Client) markReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
}
