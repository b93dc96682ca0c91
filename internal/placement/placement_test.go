package placement_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/placement/ring"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("PLACEMENT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

// startServer starts a standalone placement on a free port.
func startServer(t *testing.T, o placement.Options) *placement.Server {
	t.Helper()
	if o.Address == "" && o.Listener == nil {
		o.Address = "127.0.0.1:0"
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = 20 * time.Millisecond
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 2 * time.Second
	}
	if o.DisseminationTimeout == 0 {
		o.DisseminationTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s := placement.New(o)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// event is one callback a sidecar got.
type event struct {
	sidecar string
	op      string
	version uint64
	at      time.Time
}

// journal records the callbacks of several sidecars in one order.
type journal struct {
	mu     sync.Mutex
	events []event
}

func (j *journal) add(e event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e.at = time.Now()
	j.events = append(j.events, e)
}

func (j *journal) snapshot() []event {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

func (j *journal) count(sidecar, op string) int {
	n := 0
	for _, e := range j.snapshot() {
		if e.sidecar == sidecar && e.op == op {
			n++
		}
	}
	return n
}

// sidecar is a placement client with a recording handler.
type sidecar struct {
	name string
	c    *client.Client
}

type sidecarOpts struct {
	entities   []string
	onLock     func()
	onUpdate   func()
	namespace  string
	heartbeat  time.Duration
	lockTimout time.Duration
}

var portSeq = struct {
	sync.Mutex
	n int
}{n: 40000}

func newName() string {
	portSeq.Lock()
	defer portSeq.Unlock()
	portSeq.n++
	return fmt.Sprintf("127.0.0.1:%d", portSeq.n)
}

func startSidecar(t *testing.T, j *journal, addrs []string, o sidecarOpts) *sidecar {
	t.Helper()
	name := newName()
	if o.heartbeat == 0 {
		o.heartbeat = 200 * time.Millisecond
	}
	h := client.HandlerFuncs{
		Lock: func(v uint64) {
			j.add(event{sidecar: name, op: "lock", version: v})
			if o.onLock != nil {
				o.onLock()
			}
		},
		Update: func(tb *ring.Tables, v uint64) {
			if tb.Version() != v {
				t.Errorf("tables of version %d delivered as %d", tb.Version(), v)
			}
			j.add(event{sidecar: name, op: "update", version: v})
			if o.onUpdate != nil {
				o.onUpdate()
			}
		},
		Unlock: func(v uint64) { j.add(event{sidecar: name, op: "unlock", version: v}) },
	}
	c, err := client.New(client.Options{
		Addresses:         addrs,
		Name:              name,
		AppID:             "app-" + name[strings.LastIndex(name, ":")+1:],
		Namespace:         o.namespace,
		Entities:          o.entities,
		HeartbeatInterval: o.heartbeat,
		LockTimeout:       o.lockTimout,
		MinBackoff:        50 * time.Millisecond,
		MaxBackoff:        500 * time.Millisecond,
		Handler:           h,
		Logger:            testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	return &sidecar{name: name, c: c}
}

func waitVersion(t *testing.T, v uint64, scs ...*sidecar) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range scs {
		if err := s.c.WaitVersion(ctx, v); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
}

// eventually retries f until it returns nil or the time is up.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hostsOf(s *sidecar, typ string) []string { return s.c.Tables().Hosts(typ) }

func names(scs ...*sidecar) []string {
	var out []string
	for _, s := range scs {
		out = append(out, s.name)
	}
	slices.Sort(out)
	return out
}

// checkRounds checks each sidecar's callbacks: per version lock, update,
// unlock in that order, versions never going back.
func checkRounds(t *testing.T, j *journal) {
	t.Helper()
	last := map[string]event{}
	for _, e := range j.snapshot() {
		p, seen := last[e.sidecar]
		if seen {
			ok := false
			switch e.op {
			case "lock":
				ok = p.op == "unlock" && e.version >= p.version
			case "update":
				ok = (p.op == "lock" || p.op == "update") && e.version >= p.version
			case "unlock":
				ok = p.op == "update" && e.version == p.version
			}
			if !ok {
				t.Errorf("%s: %s %d after %s %d", e.sidecar, e.op, e.version, p.op, p.version)
			}
		} else if e.op != "lock" {
			t.Errorf("%s: first callback is %s", e.sidecar, e.op)
		}
		last[e.sidecar] = e
	}
}

func nsState(t *testing.T, s *placement.Server, ns string) placement.NamespaceState {
	t.Helper()
	for _, n := range s.State(context.Background()).Namespaces {
		if n.Namespace == ns {
			return n
		}
	}
	return placement.NamespaceState{Namespace: ns}
}

func memberNames(n placement.NamespaceState) []string {
	var out []string
	for _, m := range n.Members {
		out = append(out, m.Name)
	}
	return out
}

// Members join and leave; every member ends at the same version with the
// same rings, and places every actor on the same host.
func TestJoinLeave(t *testing.T) {
	srv := startServer(t, placement.Options{ReplicationFactor: 50})
	addrs := []string{srv.Addr()}
	j := &journal{}
	a := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	if got := hostsOf(a, "Counter"); !slices.Equal(got, []string{a.name}) {
		t.Fatalf("hosts after A joined: %v", got)
	}
	b := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter", "Cart"}})
	waitVersion(t, 2, a, b)
	for _, s := range []*sidecar{a, b} {
		if got := hostsOf(s, "Counter"); !slices.Equal(got, names(a, b)) {
			t.Fatalf("%s sees Counter hosts %v", s.name, got)
		}
		if got := hostsOf(s, "Cart"); !slices.Equal(got, []string{b.name}) {
			t.Fatalf("%s sees Cart hosts %v", s.name, got)
		}
		if s.c.Tables().ReplicationFactor() != 50 {
			t.Fatalf("replication factor %d", s.c.Tables().ReplicationFactor())
		}
	}
	owners := map[string]int{}
	for i := range 2000 {
		id := fmt.Sprint(i)
		ha, _ := a.c.Tables().Lookup("Counter", id)
		hb, _ := b.c.Tables().Lookup("Counter", id)
		if ha != hb {
			t.Fatalf("actor %s: A says %s, B says %s", id, ha, hb)
		}
		owners[ha]++
	}
	if len(owners) != 2 {
		t.Fatalf("actors spread over %v", owners)
	}
	n := nsState(t, srv, "")
	if n.Version != 2 || !slices.Equal(memberNames(n), names(a, b)) || n.Streams != 2 {
		t.Fatalf("server state %+v", n)
	}

	if err := b.c.Close(); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, 3, a)
	if got := hostsOf(a, "Counter"); !slices.Equal(got, []string{a.name}) {
		t.Fatalf("hosts after B left: %v", got)
	}
	if got := a.c.Tables().Types(); !slices.Equal(got, []string{"Counter"}) {
		t.Fatalf("types after B left: %v", got)
	}
	eventually(t, 2*time.Second, func() error {
		if n := nsState(t, srv, ""); n.Version != 3 || n.Streams != 1 || len(n.Members) != 1 {
			return fmt.Errorf("server state %+v", n)
		}
		return nil
	})
	checkRounds(t, j)
}

// Sidecars that host no actor type get the table when they connect but
// start no round; the members see nothing of them.
func TestNonActorSidecarsStartNoRound(t *testing.T) {
	srv := startServer(t, placement.Options{})
	addrs := []string{srv.Addr()}
	j := &journal{}
	a := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	locks := j.count(a.name, "lock")

	var callers []*sidecar
	for range 8 {
		callers = append(callers, startSidecar(t, j, addrs, sidecarOpts{}))
	}
	waitVersion(t, 1, callers...)
	for _, c := range callers {
		if h, ok := c.c.Tables().Lookup("Counter", "42"); !ok || h != a.name {
			t.Fatalf("caller %s finds Counter/42 on %q", c.name, h)
		}
	}
	time.Sleep(300 * time.Millisecond) // several batch intervals
	if got := j.count(a.name, "lock"); got != locks {
		t.Fatalf("the actor host got %d more lock(s) when callers connected", got-locks)
	}
	n := nsState(t, srv, "")
	if n.Version != 1 || n.Rounds != 1 || n.Streams != 9 {
		t.Fatalf("server state after callers joined: version %d rounds %d streams %d", n.Version, n.Rounds, n.Streams)
	}
	// Callers leaving start no round either.
	for _, c := range callers[:4] {
		_ = c.c.Close()
	}
	time.Sleep(300 * time.Millisecond)
	if n := nsState(t, srv, ""); n.Version != 1 || n.Rounds != 1 {
		t.Fatalf("callers leaving changed the table: %+v", n)
	}

	// A caller that starts hosting a type is a member: a round for all.
	callers[5].c.SetEntities([]string{"Timer"})
	waitVersion(t, 2, append([]*sidecar{a}, callers[4:]...)...)
	if got := hostsOf(a, "Timer"); !slices.Equal(got, []string{callers[5].name}) {
		t.Fatalf("Timer hosts %v", got)
	}
	checkRounds(t, j)
}

// Every phase is sent to all sidecars at once: a slow OnUpdate (a drain)
// on each of 20 sidecars overlaps, and the round takes about one drain,
// not twenty. And no sidecar gets update before all locked, or unlock
// before all updated.
func TestParallelDisseminationAndBarriers(t *testing.T) {
	const n = 20
	// Long enough that scheduling delays on a loaded machine (and -race)
	// stay well below it.
	const drain = 400 * time.Millisecond
	srv := startServer(t, placement.Options{BatchInterval: 50 * time.Millisecond, DisseminationTimeout: 5 * time.Second})
	addrs := []string{srv.Addr()}
	j := &journal{}
	var slow atomic.Bool // drains only in the measured round
	var scs []*sidecar
	for i := range n {
		o := sidecarOpts{entities: []string{"Counter"}, onUpdate: func() {
			if slow.Load() {
				time.Sleep(drain)
			}
		}}
		if i == 0 {
			o.onLock = func() { // a slow locker holds everyone's update back
				if slow.Load() {
					time.Sleep(drain)
				}
			}
		}
		scs = append(scs, startSidecar(t, j, addrs, o))
	}
	// All joined within one batch or a few: wait for the table naming all.
	eventually(t, 10*time.Second, func() error {
		for _, s := range scs {
			if got := len(hostsOf(s, "Counter")); got != n || s.c.Locked() {
				return fmt.Errorf("%s sees %d hosts", s.name, got)
			}
		}
		return nil
	})
	var before placement.NamespaceState
	eventually(t, 5*time.Second, func() error {
		if before = nsState(t, srv, ""); before.Disseminating || before.Version != scs[0].c.Version() {
			return fmt.Errorf("server state %+v", before)
		}
		return nil
	})
	slow.Store(true)
	// One more member: a round over n+1 sidecars.
	j2 := &journal{}
	late := startSidecar(t, j2, addrs, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, before.Version+1, append(scs, late)...)
	// The sidecars unlock before the server has all unlock acks.
	var after placement.NamespaceState
	eventually(t, 5*time.Second, func() error {
		if after = nsState(t, srv, ""); after.Rounds != before.Rounds+1 || after.Disseminating {
			return fmt.Errorf("server at round %d, want %d", after.Rounds, before.Rounds+1)
		}
		return nil
	})
	if after.LastRound < 2*drain {
		t.Fatalf("the round took %v, less than the slow lock and a drain", after.LastRound)
	}
	t.Logf("round over %d sidecars with a %v drain each and a %v lock: %v", n+1, drain, drain, after.LastRound)
	// One after another, the drains alone would take n*drain.
	if after.LastRound > n*drain/3 {
		t.Errorf("the round took %v: sidecars were not served in parallel", after.LastRound)
	}

	var updStart, updEnd []time.Time
	phases := map[string][]time.Time{}
	for _, e := range j.snapshot() {
		if e.version != before.Version+1 {
			continue
		}
		phases[e.op] = append(phases[e.op], e.at)
		if e.op == "update" {
			updStart = append(updStart, e.at)
			updEnd = append(updEnd, e.at.Add(drain))
		}
	}
	if len(phases["lock"]) != n || len(phases["update"]) != n || len(phases["unlock"]) != n {
		t.Fatalf("callbacks for the new version: %d locks %d updates %d unlocks", len(phases["lock"]), len(phases["update"]), len(phases["unlock"]))
	}
	if slices.MaxFunc(updStart, time.Time.Compare).After(slices.MinFunc(updEnd, time.Time.Compare)) {
		t.Errorf("the drains did not overlap: updates started over %v", slices.MaxFunc(updStart, time.Time.Compare).Sub(slices.MinFunc(updStart, time.Time.Compare)))
	}
	// Barriers: the slow locker returned drain after its lock; nobody
	// updated before that, and nobody unlocked before the last update
	// had drained.
	var slowLock time.Time
	for _, e := range j.snapshot() {
		if e.version == before.Version+1 && e.op == "lock" && e.sidecar == scs[0].name {
			slowLock = e.at
		}
	}
	firstUpdate := slices.MinFunc(phases["update"], time.Time.Compare)
	if firstUpdate.Before(slowLock.Add(drain)) {
		t.Errorf("an update came %v after the slow lock began, before it was acked", firstUpdate.Sub(slowLock))
	}
	lastUpdate := slices.MaxFunc(phases["update"], time.Time.Compare)
	firstUnlock := slices.MinFunc(phases["unlock"], time.Time.Compare)
	if firstUnlock.Before(lastUpdate.Add(drain)) {
		t.Errorf("an unlock came %v after the last update, before its drain ended", firstUnlock.Sub(lastUpdate))
	}
	checkRounds(t, j)
}

// rawMember is a hand-driven sidecar on a bare stream.
type rawMember struct {
	name   string
	stream placementv1.Placement_ReportDaprStatusClient
	orders chan *placementv1.PlacementOrder
	done   chan error
}

func dialRaw(t *testing.T, addr, name string, entities []string) *rawMember {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		cc.Close()
	})
	stream, err := placementv1.NewPlacementClient(cc).ReportDaprStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMember{name: name, stream: stream, orders: make(chan *placementv1.PlacementOrder, 64), done: make(chan error, 1)}
	// io.EOF: the server ended the stream already; Recv tells why.
	if err := stream.Send(&placementv1.Host{Name: name, Id: "raw", Entities: entities, Operation: placementv1.HostOperation_REPORT}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	go func() {
		for {
			o, err := stream.Recv()
			if err != nil {
				m.done <- err
				return
			}
			m.orders <- o
		}
	}()
	return m
}

func (m *rawMember) ack(t *testing.T, o *placementv1.PlacementOrder) {
	ops := map[string]placementv1.HostOperation{"lock": placementv1.HostOperation_LOCK, "update": placementv1.HostOperation_UPDATE, "unlock": placementv1.HostOperation_UNLOCK}
	v := o.GetVersion()
	if err := m.stream.Send(&placementv1.Host{Name: m.name, Id: "raw", Operation: ops[o.GetOperation()], Version: &v}); err != nil {
		t.Errorf("ack: %v", err)
	}
}

// waitEnd waits for the server to end m's stream and returns the status.
func (m *rawMember) waitEnd(t *testing.T, within time.Duration) *status.Status {
	t.Helper()
	for {
		select {
		case err := <-m.done:
			return status.Convert(err)
		case <-m.orders:
		case <-time.After(within):
			t.Fatalf("%s: the server kept the stream open for %v", m.name, within)
		}
	}
}

// A member that stops reporting is removed after the heartbeat timeout,
// even though its stream stays open, and the others get a table without
// it.
func TestHeartbeatTimeoutRemovesMember(t *testing.T) {
	srv := startServer(t, placement.Options{HeartbeatTimeout: 600 * time.Millisecond})
	j := &journal{}
	a := startSidecar(t, j, []string{srv.Addr()}, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	raw := dialRaw(t, srv.Addr(), "10.9.9.9:50002", []string{"Counter"})
	// Ack the orders of the round that adds it, then fall silent.
	for acked := 0; acked < 3; {
		select {
		case o := <-raw.orders:
			raw.ack(t, o)
			if o.GetVersion() >= 2 {
				acked++
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no round for the raw member")
		}
	}
	waitVersion(t, 2, a)
	if got := hostsOf(a, "Counter"); !slices.Equal(got, []string{"10.9.9.9:50002", a.name}) {
		t.Fatalf("hosts %v", got)
	}
	silentSince := time.Now()
	st := raw.waitEnd(t, 5*time.Second)
	if st.Code() != codes.DeadlineExceeded {
		t.Fatalf("silent member's stream ended with %v", st)
	}
	waitVersion(t, 3, a)
	elapsed := time.Since(silentSince)
	if got := hostsOf(a, "Counter"); !slices.Equal(got, []string{a.name}) {
		t.Fatalf("hosts after the timeout: %v", got)
	}
	if elapsed < 500*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("removed %v after falling silent, want about the 600ms timeout", elapsed)
	}
	// The live member, reporting every 200ms, was never dropped.
	if a.c.Address() != srv.Addr() {
		t.Fatal("the live member lost its stream")
	}
	checkRounds(t, j)
}

// A member that does not ack a phase is cut off after the dissemination
// timeout; the round completes for the others and a new round removes it.
func TestUnackedPhaseDropsMember(t *testing.T) {
	srv := startServer(t, placement.Options{DisseminationTimeout: 400 * time.Millisecond})
	j := &journal{}
	a := startSidecar(t, j, []string{srv.Addr()}, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	raw := dialRaw(t, srv.Addr(), "10.9.9.8:50002", []string{"Counter"}) // never acks
	st := raw.waitEnd(t, 5*time.Second)
	if st.Code() != codes.DeadlineExceeded {
		t.Fatalf("stream ended with %v", st)
	}
	// Version 2 added it (its round finished without it); version 3
	// removed it.
	waitVersion(t, 3, a)
	if got := hostsOf(a, "Counter"); !slices.Equal(got, []string{a.name}) {
		t.Fatalf("hosts %v", got)
	}
	checkRounds(t, j)
}

// Namespaces have their own members and versions.
func TestNamespaces(t *testing.T) {
	srv := startServer(t, placement.Options{})
	j := &journal{}
	addrs := []string{srv.Addr()}
	a := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}, namespace: "ns1"})
	b := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}, namespace: "ns2"})
	waitVersion(t, 1, a, b)
	c := startSidecar(t, j, addrs, sidecarOpts{entities: []string{"Counter"}, namespace: "ns2"})
	waitVersion(t, 2, b, c)
	if a.c.Version() != 1 || !slices.Equal(hostsOf(a, "Counter"), []string{a.name}) {
		t.Fatalf("ns1 saw ns2's change: version %d hosts %v", a.c.Version(), hostsOf(a, "Counter"))
	}
	if got := hostsOf(b, "Counter"); !slices.Equal(got, names(b, c)) {
		t.Fatalf("ns2 hosts %v", got)
	}
}

// A restarted standalone placement counts versions from scratch; clients
// follow it on the new stream instead of refusing the lower version.
func TestClientFollowsRestartedPlacement(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := startServer(t, placement.Options{Listener: ln})
	j := &journal{}
	a := startSidecar(t, j, []string{addr}, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	b := startSidecar(t, j, []string{addr}, sidecarOpts{entities: []string{"Cart"}})
	waitVersion(t, 2, a, b)
	b.c.SetEntities([]string{"Cart", "Basket"})
	waitVersion(t, 3, a, b)
	b.c.SetEntities([]string{"Cart"})
	waitVersion(t, 4, a, b)
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv2 := startServer(t, placement.Options{Address: addr})
	eventually(t, 10*time.Second, func() error {
		n := nsState(t, srv2, "")
		if len(n.Members) != 2 {
			return fmt.Errorf("members %v", memberNames(n))
		}
		for _, s := range []*sidecar{a, b} {
			if n.Version > 2 {
				return fmt.Errorf("the new placement is at version %d after two joins", n.Version)
			}
			if s.c.Version() != n.Version || s.c.Locked() || s.c.Address() != addr {
				return fmt.Errorf("%s at version %d, server at %d", s.name, s.c.Version(), n.Version)
			}
			if !slices.Equal(s.c.Tables().Types(), []string{"Cart", "Counter"}) {
				return fmt.Errorf("%s sees types %v", s.name, s.c.Tables().Types())
			}
		}
		return nil
	})
}

// A lock the placement never ends is ended locally after LockTimeout.
func TestClientUnlocksLocallyWhenStuck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A fake placement that locks and then says nothing more.
	gs := grpc.NewServer()
	placementv1.RegisterPlacementServer(gs, stuckPlacement{})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	j := &journal{}
	a := startSidecar(t, j, []string{ln.Addr().String()}, sidecarOpts{entities: []string{"X"}, lockTimout: 300 * time.Millisecond})
	eventually(t, 5*time.Second, func() error {
		if j.count(a.name, "lock") == 1 && j.count(a.name, "unlock") == 1 && !a.c.Locked() {
			return nil
		}
		return fmt.Errorf("events %v", j.snapshot())
	})
}

type stuckPlacement struct {
	placementv1.UnimplementedPlacementServer
}

func (stuckPlacement) ReportDaprStatus(s placementv1.Placement_ReportDaprStatusServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	if err := s.Send(&placementv1.PlacementOrder{Operation: "lock", Version: 1}); err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// Addresses are tried in turn: a dead one first costs little.
func TestClientSkipsDeadAddress(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now
	srv := startServer(t, placement.Options{})
	j := &journal{}
	start := time.Now()
	a := startSidecar(t, j, []string{deadAddr, srv.Addr()}, sidecarOpts{entities: []string{"Counter"}})
	waitVersion(t, 1, a)
	if a.c.Address() != srv.Addr() {
		t.Fatalf("connected to %q", a.c.Address())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v past one dead address", d)
	}
	select {
	case <-a.c.Ready():
	default:
		t.Fatal("Ready not closed after the first round")
	}
}

func TestParseAddresses(t *testing.T) {
	got := client.ParseAddresses(" a:1, ,b:2,c:3 ")
	if !slices.Equal(got, []string{"a:1", "b:2", "c:3"}) {
		t.Fatalf("got %v", got)
	}
	if client.ParseAddresses("  ") != nil {
		t.Fatal("blank list parsed to addresses")
	}
}

// Run is Start for a caller that owns the goroutine; Lookup and Connected
// answer from the tables it follows.
func TestClientRun(t *testing.T) {
	srv := startServer(t, placement.Options{})
	c, err := client.New(client.Options{Addresses: []string{srv.Addr()}, Name: "127.0.0.1:39999", AppID: "runner", HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if c.Connected() {
		t.Fatal("connected before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx, []string{"Thing"}) }()
	eventually(t, 5*time.Second, func() error {
		if h, ok := c.Lookup("Thing", "7"); !ok || h != "127.0.0.1:39999" || !c.Connected() {
			return fmt.Errorf("lookup %q %v connected %v", h, ok, c.Connected())
		}
		return nil
	})
	if err := c.Run(context.Background(), nil); err == nil {
		t.Fatal("a second Run did not fail")
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if c.Connected() {
		t.Fatal("still connected after Run returned")
	}
	// The member left with the stream.
	eventually(t, 3*time.Second, func() error {
		if n := nsState(t, srv, ""); len(n.Members) != 0 {
			return fmt.Errorf("members %v", memberNames(n))
		}
		return nil
	})
}
