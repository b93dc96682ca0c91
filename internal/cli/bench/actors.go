package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// The actor scenarios run on the invocation machinery (runCall, the
// fixed-rate and closed-loop modes, the CPU meter, InvokeReport) with
// calls of kind callActor: PUT /actors/{type}/{id}/method/echo on the
// bench app, which hosts the type, or /v1.0/actors/… on a sidecar. Sidecar
// B fronts the app and hosts the type; sidecar A has no app, so it hosts
// nothing and forwards every call to B; both find each other through a
// standalone placement service (`mecha control-plane`), a process of its
// own like the rest.

// reportActors is InvokeReport.Kind of the actor scenarios.
const reportActors = "actors"

// actorScenarios are the paths `mecha bench actors` measures, in order.
var actorScenarios = []invokeScenario{
	{ID: "actor-direct", App: appHTTP, Call: callActor, Path: "client -> app PUT /actors/T/{id}/method/echo (warm ids)"},
	{ID: "actor-self", App: appHTTP, Call: callActor, Sidecars: 1, Baseline: "actor-direct", Path: "client -> sidecar B /v1.0/actors/T/{id}/method/echo -> app (B hosts T; warm ids)"},
	{ID: "actor-two", App: appHTTP, Call: callActor, Sidecars: 2, Baseline: "actor-direct", Path: "client -> sidecar A (hosts no actors) -> sidecar B -> app (warm ids)"},
	{ID: "activation", App: appHTTP, Call: callActor, Sidecars: 1, Baseline: "actor-direct", NewActors: true, Path: "client -> sidecar B -> app, a new actor id every call"},
	{ID: "activation-two", App: appHTTP, Call: callActor, Sidecars: 2, Baseline: "actor-direct", NewActors: true, Path: "client -> sidecar A -> sidecar B -> app, a new actor id every call"},
}

// daprd 1.18's actor figures on a 2-core machine, from the issue that set
// Mecha's targets, and the targets (warm calls through two sidecars at
// 1,000 calls/s).
const (
	daprdActorRate       = 1000.0
	daprdActorTwoP50Ms   = 0.89
	daprdActorTwoP99Ms   = 7.0
	daprdActivationRate  = 500.0
	daprdActivationP50Ms = 0.86
	targetActorTwoP50Ms  = 0.4
	targetActorTwoP99Ms  = 3.0
)

const (
	// actorWarmPrefix starts the ids of the pre-activated actors.
	actorWarmPrefix = "warm-"
	// actorPlacementWait bounds the wait for B to host the type and for
	// a first call to get through.
	actorPlacementWait = 30 * time.Second
)

// actorTarget says which actors an actor call reaches.
type actorTarget struct {
	Type string
	// Warm, when positive, makes the calls cycle through the ids warm-0 …
	// warm-(Warm-1), starting at warm-0.
	Warm int
	// NewPrefix (Warm 0) makes every call reach a new id: NewPrefix and a
	// counter.
	NewPrefix string
}

// urls returns what gives each call of t its URL; it is safe for
// concurrent use, so the workers share one sequence of ids.
func (a actorTarget) urls(t callTarget) (func() string, error) {
	if a.Type == "" {
		return nil, errors.New("an actor call needs the actor type")
	}
	base := "http://" + t.Addr + "/actors/" + url.PathEscape(a.Type) + "/"
	if t.AppID != "" {
		base = "http://" + t.Addr + "/v1.0/actors/" + url.PathEscape(a.Type) + "/"
	}
	suffix := "/method/" + appMethod
	var n atomic.Uint64
	if a.Warm > 0 {
		us := make([]string, a.Warm)
		for i := range us {
			us[i] = base + actorWarmPrefix + strconv.Itoa(i) + suffix
		}
		return func() string { return us[(n.Add(1)-1)%uint64(len(us))] }, nil
	}
	if a.NewPrefix == "" {
		return nil, errors.New("an actor call needs warm ids or a prefix for new ones")
	}
	return func() string { return base + url.PathEscape(a.NewPrefix) + strconv.FormatUint(n.Add(1), 10) + suffix }, nil
}

// actorsAllOptions shape `mecha bench actors`.
type actorsAllOptions struct {
	Invoke    invokeOptions
	Binary    string
	Scenarios []invokeScenario
	ActorType string
	// WarmActors is the number of pre-activated ids the warm calls cycle
	// through.
	WarmActors int
	// ActivationRate is the fixed rate of the NewActors scenarios.
	ActivationRate float64
}

func (o actorsAllOptions) validate() error {
	errs := []error{o.Invoke.validate()}
	if o.ActorType == "" {
		errs = append(errs, errors.New("--actor-type must not be empty"))
	}
	if o.WarmActors < 1 {
		errs = append(errs, fmt.Errorf("--actors %d must be at least 1", o.WarmActors))
	}
	if o.Invoke.Rate.Rate > 0 {
		r := o.Invoke.Rate
		r.Rate = o.ActivationRate
		if err := r.validate(); err != nil {
			errs = append(errs, fmt.Errorf("--activation-rate: %w", err))
		}
	}
	return errors.Join(errs...)
}

// settings are the report's settings for o.
func (o actorsAllOptions) settings() InvokeSettings {
	s := invokeSettings(o.Invoke)
	s.ActorType, s.WarmActors = o.ActorType, o.WarmActors
	if o.Invoke.Rate.Rate > 0 {
		s.ActivationRate = o.ActivationRate
	}
	return s
}

// runActorsAll starts the placement service, the app and sidecars B (in
// front of the app, hosting the actor type) and A (no app), waits until B
// hosts the type, pre-activates the warm ids and measures every scenario.
// Every process is stopped by its PID, on error and Ctrl-C too, and the
// temporary directory removed before it returns.
func runActorsAll(ctx context.Context, o actorsAllOptions, progress io.Writer) (*InvokeReport, error) {
	rep := &InvokeReport{Kind: reportActors, Machine: thisMachine(), Settings: o.settings()}
	tmp, err := os.MkdirTemp("", "mecha-bench-actors-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	env := append(os.Environ(), "MECHA_HOME="+filepath.Join(tmp, "home"))
	prefix := fmt.Sprintf("mecha-bench-%d", os.Getpid())

	cp, placementAddr, err := startPlacement(ctx, o.Binary, tmp, env)
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	fmt.Fprintf(progress, "started control-plane pid %d: placement %s\n", cp.PID(), placementAddr)
	app, err := startApp(ctx, o.Binary, tmp, o.Invoke.BodySize, env, "--actor-type", o.ActorType)
	if err != nil {
		return nil, err
	}
	defer app.Stop()
	fmt.Fprintf(progress, "started app pid %d: http %s\n", app.PID(), app.httpAddr)

	// Only B has the actor state store: hosting needs one.
	storeDir, err := writeResources(tmp, "actor-store", componentYAML("actorstore", "state.in-memory", "actorStateStore", "true"))
	if err != nil {
		return nil, err
	}
	emptyDir := filepath.Join(tmp, "no-resources")
	if err := os.MkdirAll(emptyDir, 0o755); err != nil {
		return nil, err
	}
	bID, aID := prefix+"-actors", prefix+"-caller"
	b, err := startHealthy(ctx, sidecarSpec{Name: "sidecar-b", Binary: o.Binary, AppID: bID, ResourcesDir: storeDir, LogDir: tmp, Env: env, Internal: true,
		Args: []string{"--app-port", portOf(app.httpAddr), "--app-protocol", "http", "--placement-host-address", placementAddr}}, progress)
	if err != nil {
		return nil, err
	}
	defer b.Stop()
	a, err := startHealthy(ctx, sidecarSpec{Name: "sidecar-a", Binary: o.Binary, AppID: aID, ResourcesDir: emptyDir, LogDir: tmp, Env: env, Internal: true,
		Args: []string{"--placement-host-address", placementAddr}}, progress)
	if err != nil {
		return nil, err
	}
	defer a.Stop()
	procs := []*sidecarProc{cp, app, b, a}

	if err := waitHostReady(ctx, b.httpAddr, o.ActorType, actorPlacementWait); err != nil {
		return nil, errors.Join(fmt.Errorf("sidecar B: %w", err), exitedProcs(procs...))
	}
	if err := preActivate(ctx, b.httpAddr, bID, o.ActorType, o.WarmActors, o.Invoke.BodySize); err != nil {
		return nil, errors.Join(err, exitedProcs(procs...))
	}
	fmt.Fprintf(progress, "sidecar B hosts %s; %d actors activated\n", o.ActorType, o.WarmActors)

	ie := invokeEnv{
		App: endpoint{HTTPAddr: app.httpAddr, PID: app.PID()},
		A:   endpoint{HTTPAddr: a.httpAddr, GRPCAddr: a.grpcAddr, AppID: aID, PID: a.PID()},
		B:   endpoint{HTTPAddr: b.httpAddr, GRPCAddr: b.grpcAddr, AppID: bID, PID: b.PID()},
	}
	for _, s := range o.Scenarios {
		t := s.target(ie)
		so := o.Invoke
		t.Actor = actorTarget{Type: o.ActorType, Warm: o.WarmActors}
		if s.NewActors {
			t.Actor = actorTarget{Type: o.ActorType, NewPrefix: "new-" + s.ID + "-"}
			if so.Rate.Rate > 0 {
				so.Rate.Rate = o.ActivationRate
			}
		}
		// The first call through A (runCall's probe) waits for A's table.
		r, err := runCall(ctx, s, t, s.pids(ie), so, progress)
		if err != nil {
			return nil, errors.Join(err, exitedProcs(procs...))
		}
		rep.Results = append(rep.Results, r)
	}
	md, err := getActorMetadata(ctx, b.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("sidecar B's metadata after the runs: %w", err)
	}
	rep.ActiveActors = md.active(o.ActorType)
	for _, p := range []*sidecarProc{a, b} {
		rss, _ := procRSSMB(p.PID())
		rep.SidecarRSSMB = max(rep.SidecarRSSMB, rss)
	}
	// A first, then B (which deactivates its actors, calling the app),
	// the app and the placement last. The figures are in: a process that
	// has to be killed is reported, not fatal.
	for _, p := range []*sidecarProc{a, b, app, cp} {
		t0 := time.Now()
		if err := p.Stop(); err != nil {
			fmt.Fprintf(progress, "warning: %v\n", err)
			continue
		}
		fmt.Fprintf(progress, "stopped %s in %v\n", p.name, time.Since(t0).Round(time.Millisecond))
	}
	rep.Comparisons = rep.compare()
	return rep, nil
}

// startPlacement execs `mecha control-plane` as a standalone placement
// node on free loopback ports and waits for its /healthz. It returns the
// process (the caller must call Stop) and the placement's address.
func startPlacement(ctx context.Context, bin, logDir string, env []string) (*sidecarProc, string, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, "", fmt.Errorf("picking ports: %w", err)
	}
	cmd := exec.Command(bin, "control-plane",
		"--placement-port", strconv.Itoa(ports[0]),
		"--healthz-port", strconv.Itoa(ports[1]),
		"--listen-address", "127.0.0.1",
		"--log-level", "warn")
	p, err := spawn("control-plane", cmd, logDir, env, nil)
	if err != nil {
		return nil, "", err
	}
	p.httpAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	if _, err := p.waitStatus(ctx, "/healthz", http.StatusOK, 5*time.Millisecond, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	return p, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), nil
}

// actorMetadata is the part of GET /v1.0/metadata the actor scenarios
// read.
type actorMetadata struct {
	ActorRuntime struct {
		HostReady    bool `json:"hostReady"`
		ActiveActors []struct {
			Type  string `json:"type"`
			Count int    `json:"count"`
		} `json:"activeActors"`
	} `json:"actorRuntime"`
}

// active is the number of active actors of typ.
func (m *actorMetadata) active(typ string) int {
	for _, c := range m.ActorRuntime.ActiveActors {
		if c.Type == typ {
			return c.Count
		}
	}
	return 0
}

func getActorMetadata(ctx context.Context, addr string) (*actorMetadata, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1.0/metadata", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1.0/metadata: HTTP %d: %.200s", resp.StatusCode, body)
	}
	var m actorMetadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("GET /v1.0/metadata: %w", err)
	}
	return &m, nil
}

// waitHostReady polls the sidecar's metadata until its actor runtime says
// the host is ready (the app's types registered and a placement table
// received).
func waitHostReady(ctx context.Context, addr, typ string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, err := getActorMetadata(ctx, addr)
		if err == nil && m.ActorRuntime.HostReady {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("actorRuntime.hostReady is still false")
			}
			return fmt.Errorf("not hosting %s after %v: %w", typ, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// preActivate calls each of the warm ids once through the sidecar at addr
// (after a first call that succeeds, which may be retried), so that the
// measured calls find them active.
func preActivate(ctx context.Context, addr, appID, typ string, warm, bodySize int) error {
	t := callTarget{Call: callActor, Addr: addr, AppID: appID, Actor: actorTarget{Type: typ, Warm: warm}}
	c := &clients{http: newHTTPClient(1)}
	defer c.Close()
	newWorker, err := invokeWorkers(t, rawValue(bodySize), c)
	if err != nil {
		return err
	}
	f, err := newWorker(0)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, f, actorPlacementWait); err != nil {
		return fmt.Errorf("first actor call through sidecar B: %w", err)
	}
	// One whole round, whichever id the first call reached.
	for range warm {
		if err := f(ctx); err != nil {
			return fmt.Errorf("activating the warm actors: %w", err)
		}
	}
	return nil
}

// compareActors gives, for every path through sidecars, p50 and p99 at
// the fixed rate (with the targets for warm calls through two
// sidecars and daprd's figures where the issue gives them, at the rate it
// gives them for) and the closed-loop throughput against the direct call.
func compareActors(r *InvokeReport) []Comparison {
	var out []Comparison
	for _, x := range r.Results {
		if x.Sidecars == 0 {
			continue
		}
		if x.Rate != nil {
			rate := x.Rate.TargetRate
			p50 := Comparison{Name: fmt.Sprintf("%s: p50 @ %s/s", x.ID, thousands(rate)), Value: x.Rate.P50Ms, Unit: "ms"}
			p99 := Comparison{Name: fmt.Sprintf("%s: p99 @ %s/s", x.ID, thousands(rate)), Value: x.Rate.P99Ms, Unit: "ms"}
			switch {
			case x.ID == "actor-two" && rate == daprdActorRate:
				p50.Reference, p99.Reference = fmt.Sprintf("daprd %g ms", daprdActorTwoP50Ms), fmt.Sprintf("daprd %g ms", daprdActorTwoP99Ms)
				p50.Target, p50.Met = fmt.Sprintf("<= %g ms", targetActorTwoP50Ms), met(p50.Value <= targetActorTwoP50Ms)
				p99.Target, p99.Met = fmt.Sprintf("<= %g ms", targetActorTwoP99Ms), met(p99.Value <= targetActorTwoP99Ms)
			case x.NewActors && rate == daprdActivationRate:
				p50.Reference = fmt.Sprintf("daprd activation %g ms", daprdActivationP50Ms)
			}
			out = append(out, p50, p99)
		}
		base := r.find(x.Baseline)
		if x.Max != nil && base != nil && base.Max != nil && base.Max.ReqPerSec > 0 {
			out = append(out, Comparison{Name: fmt.Sprintf("%s vs %s: max throughput", x.ID, base.ID), Value: 100 * x.Max.ReqPerSec / base.Max.ReqPerSec, Unit: "%"})
		}
	}
	return out
}
