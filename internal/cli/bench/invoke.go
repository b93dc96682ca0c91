package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
)

// The calls a scenario makes.
const (
	// callHTTP is POST /echo on the HTTP app, or POST
	// /v1.0/invoke/{app}/method/echo on a sidecar's HTTP API.
	callHTTP = "http"
	// callInvokeService is the Dapr gRPC API's InvokeService (what the
	// SDKs' InvokeMethodWithContent sends), POST echo.
	callInvokeService = "invoke-service"
	// callUnary is grpc.testing.TestService/UnaryCall: the gRPC app's own
	// service, straight or through the sidecars' transparent proxying
	// (dapr-app-id metadata).
	callUnary = "unary"
	// callOnInvoke is runtime.v1.AppCallback/OnInvoke on the gRPC app
	// itself: what a sidecar sends it for InvokeService.
	callOnInvoke = "oninvoke"
	// callActor is an actor method call, PUT
	// /actors/{type}/{id}/method/echo on the HTTP app, or PUT
	// /v1.0/actors/{type}/{id}/method/echo on a sidecar's HTTP API (see
	// actors.go).
	callActor = "actor"
)

// The app a scenario needs behind sidecar B.
const (
	appHTTP = "http"
	appGRPC = "grpc"
)

// invokeScenario is one path of a 1 KiB call.
type invokeScenario struct {
	ID string `json:"id"`
	// App is the app sidecar B fronts for this scenario (appHTTP/appGRPC).
	App  string `json:"app"`
	Call string `json:"call"`
	// Sidecars on the path: 0 (direct), 1 (self: B → its app), 2 (A → B).
	Sidecars int `json:"sidecars"`
	// Baseline is the direct scenario this one's overhead is against.
	Baseline string `json:"baseline,omitempty"`
	Path     string `json:"path"`
	// NewActors (actor calls only) calls a new actor id every time, for
	// the activation latency, instead of the pre-activated ones.
	NewActors bool `json:"new_actors,omitempty"`
}

// invokeScenarios are the paths `invoke-all` measures, in order: the HTTP
// app first (sidecar B with --app-protocol http), then the gRPC app
// (sidecar B restarted with --app-protocol grpc).
var invokeScenarios = []invokeScenario{
	{ID: "http-direct", App: appHTTP, Call: callHTTP, Path: "client -> app, HTTP POST /echo"},
	{ID: "http-self", App: appHTTP, Call: callHTTP, Sidecars: 1, Baseline: "http-direct", Path: "client -> sidecar B /v1.0/invoke/B -> app"},
	{ID: "http-two", App: appHTTP, Call: callHTTP, Sidecars: 2, Baseline: "http-direct", Path: "client -> sidecar A /v1.0/invoke/B -> sidecar B -> app"},
	{ID: "invoke-two", App: appHTTP, Call: callInvokeService, Sidecars: 2, Baseline: "http-direct", Path: "client -> sidecar A gRPC InvokeService -> sidecar B -> HTTP app"},
	{ID: "grpc-direct", App: appGRPC, Call: callUnary, Path: "client -> gRPC app, TestService/UnaryCall"},
	{ID: "proxy-self", App: appGRPC, Call: callUnary, Sidecars: 1, Baseline: "grpc-direct", Path: "client -> sidecar B (dapr-app-id B) -> gRPC app"},
	{ID: "proxy-two", App: appGRPC, Call: callUnary, Sidecars: 2, Baseline: "grpc-direct", Path: "client -> sidecar A (dapr-app-id B) -> sidecar B -> gRPC app"},
	{ID: "oninvoke-direct", App: appGRPC, Call: callOnInvoke, Path: "client -> gRPC app, AppCallback/OnInvoke"},
	{ID: "invoke-grpcapp-two", App: appGRPC, Call: callInvokeService, Sidecars: 2, Baseline: "oninvoke-direct", Path: "client -> sidecar A InvokeService -> sidecar B -> gRPC app OnInvoke"},
}

func findScenario(id string) (invokeScenario, bool) { return findIn(invokeScenarios, id) }

func findIn(all []invokeScenario, id string) (invokeScenario, bool) {
	for _, s := range all {
		if s.ID == id {
			return s, true
		}
	}
	return invokeScenario{}, false
}

// selectScenarios returns the invocation scenarios named in ids
// (comma-separated; all when empty), in the canonical order, plus the
// direct baselines they need.
func selectScenarios(ids string) ([]invokeScenario, error) {
	return selectFrom(invokeScenarios, ids)
}

// selectFrom is selectScenarios from the scenarios all.
func selectFrom(all []invokeScenario, ids string) ([]invokeScenario, error) {
	if strings.TrimSpace(ids) == "" {
		return all, nil
	}
	want := map[string]bool{}
	for id := range strings.SplitSeq(ids, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		s, ok := findIn(all, id)
		if !ok {
			var known []string
			for _, s := range all {
				known = append(known, s.ID)
			}
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", id, strings.Join(known, ", "))
		}
		want[id] = true
		if s.Baseline != "" {
			want[s.Baseline] = true
		}
	}
	var out []invokeScenario
	for _, s := range all {
		if want[s.ID] {
			out = append(out, s)
		}
	}
	return out, nil
}

// endpoint is a running sidecar (or app) as the scenarios see it.
type endpoint struct {
	HTTPAddr, GRPCAddr string
	AppID              string
	PID                int
}

// invokeEnv is what one phase runs against: the app and the two sidecars,
// B being in front of the phase's app.
type invokeEnv struct {
	App  endpoint
	A, B endpoint
}

// callTarget is what one scenario calls, resolved against an environment.
type callTarget struct {
	Call string
	// Addr is the host:port called (the app's or a sidecar's).
	Addr string
	// AppID is the app the sidecar at Addr is asked to reach; empty when
	// Addr is the app itself.
	AppID string
	// Actor says which actors an actor call reaches.
	Actor actorTarget
}

func (s invokeScenario) target(env invokeEnv) callTarget {
	t := callTarget{Call: s.Call}
	ep := env.App
	switch s.Sidecars {
	case 1:
		ep = env.B
	case 2:
		ep = env.A
	}
	if s.Sidecars > 0 {
		t.AppID = env.B.AppID
	}
	t.Addr = ep.GRPCAddr
	if s.Call == callHTTP || s.Call == callActor {
		t.Addr = ep.HTTPAddr
	}
	return t
}

// pids are the processes on the path, for CPU accounting (0: not on it).
func (s invokeScenario) pids(env invokeEnv) rolePIDs {
	p := rolePIDs{app: env.App.PID}
	if s.Sidecars >= 1 {
		p.b = env.B.PID
	}
	if s.Sidecars == 2 {
		p.a = env.A.PID
	}
	return p
}

// clients are the connections one scenario's workers share.
type clients struct {
	http *http.Client
	conn *grpc.ClientConn
	// conns are round-robined by worker id when there are several.
	conns []*grpc.ClientConn
}

func newClients(t callTarget, workers, conns int) (*clients, error) {
	if t.Call == callHTTP || t.Call == callActor {
		return &clients{http: newHTTPClient(workers)}, nil
	}
	cs, err := dialGRPC(t.Addr, conns)
	if err != nil {
		return nil, err
	}
	return &clients{conns: cs, conn: cs[0]}, nil
}

func (c *clients) Close() {
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
	closeConns(c.conns)
}

// invokeWorkers builds the request function of each worker: one call of t
// with body, checking that the answer has len(body) bytes.
func invokeWorkers(t callTarget, body []byte, c *clients) (func(id int) (reqFunc, error), error) {
	n := len(body)
	switch t.Call {
	case callHTTP:
		u := "http://" + t.Addr + "/" + appMethod
		if t.AppID != "" {
			u = "http://" + t.Addr + "/v1.0/invoke/" + url.PathEscape(t.AppID) + "/method/" + appMethod
		}
		return httpCallWorkers(c.http, http.MethodPost, func() string { return u }, body), nil
	case callActor:
		next, err := t.Actor.urls(t)
		if err != nil {
			return nil, err
		}
		return httpCallWorkers(c.http, http.MethodPut, next, body), nil
	case callInvokeService:
		if t.AppID == "" {
			return nil, errors.New("InvokeService needs the target app id")
		}
		req := &runtimev1.InvokeServiceRequest{Id: t.AppID, Message: &commonv1.InvokeRequest{
			Method: appMethod, ContentType: appContentType, Data: &anypb.Any{Value: body},
			HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST},
		}}
		return func(id int) (reqFunc, error) {
			client := runtimev1.NewDaprClient(c.conns[id%len(c.conns)])
			return func(ctx context.Context) error {
				resp, err := client.InvokeService(ctx, req)
				if err != nil {
					return fmt.Errorf("InvokeService: %w", err)
				}
				if got := len(resp.GetData().GetValue()); got != n {
					return fmt.Errorf("InvokeService: %d bytes, want %d", got, n)
				}
				return nil
			}, nil
		}, nil
	case callUnary:
		req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}}
		var md metadata.MD
		if t.AppID != "" {
			md = metadata.Pairs("dapr-app-id", t.AppID)
		}
		return func(id int) (reqFunc, error) {
			client := testpb.NewTestServiceClient(c.conns[id%len(c.conns)])
			return func(ctx context.Context) error {
				if md != nil {
					ctx = metadata.NewOutgoingContext(ctx, md)
				}
				resp, err := client.UnaryCall(ctx, req)
				if err != nil {
					return fmt.Errorf("UnaryCall: %w", err)
				}
				if got := len(resp.GetPayload().GetBody()); got != n {
					return fmt.Errorf("UnaryCall: %d bytes, want %d", got, n)
				}
				return nil
			}, nil
		}, nil
	case callOnInvoke:
		if t.AppID != "" {
			return nil, errors.New("OnInvoke is called on the app itself (no app id)")
		}
		req := &commonv1.InvokeRequest{
			Method: appMethod, ContentType: appContentType, Data: &anypb.Any{Value: body},
			HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST},
		}
		return func(id int) (reqFunc, error) {
			client := runtimev1.NewAppCallbackClient(c.conns[id%len(c.conns)])
			return func(ctx context.Context) error {
				resp, err := client.OnInvoke(ctx, req)
				if err != nil {
					return fmt.Errorf("OnInvoke: %w", err)
				}
				if got := len(resp.GetData().GetValue()); got != n {
					return fmt.Errorf("OnInvoke: %d bytes, want %d", got, n)
				}
				return nil
			}, nil
		}, nil
	}
	return nil, fmt.Errorf("unknown call %q (http, invoke-service, unary, oninvoke or actor)", t.Call)
}

// httpCallWorkers builds workers that each send body with method to the
// URL next returns (called once per request) and check for a 200 answer of
// len(body) bytes.
func httpCallWorkers(client *http.Client, method string, next func() string, body []byte) func(id int) (reqFunc, error) {
	n := len(body)
	return func(int) (reqFunc, error) {
		var buf bytes.Buffer
		return func(ctx context.Context) error {
			u := next()
			req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header["Content-Type"] = []string{appContentType}
			status, err := do(client, req, &buf)
			if err != nil {
				return err
			}
			if status != http.StatusOK || buf.Len() != n {
				return fmt.Errorf("%s %s: HTTP %d with %d bytes, want 200 with %d: %.200s", method, u, status, buf.Len(), n, buf.Bytes())
			}
			return nil
		}, nil
	}
}

// waitReady makes one call until it succeeds: the first call through a
// freshly started sidecar resolves the target and dials it.
func waitReady(ctx context.Context, f reqFunc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not answering after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// invokeOptions shape the measurement of each scenario.
type invokeOptions struct {
	BodySize int
	// Rate is the fixed-rate mode; skipped when Rate.Rate is 0.
	Rate rateOptions
	// Max is the closed-loop (maximum throughput) mode; skipped when
	// Max.Concurrency is 0.
	Max loadOptions
	// Conns is the number of gRPC client connections.
	Conns int
	// Profile, when set, is called around the max-throughput run of each
	// scenario and returns a function to call after it.
	Profile func(ctx context.Context, s invokeScenario) (done func())
}

func (o invokeOptions) validate() error {
	var errs []error
	errs = append(errs, validateBodySize(o.BodySize))
	if o.Rate.Rate == 0 && o.Max.Concurrency == 0 {
		errs = append(errs, errors.New("nothing to measure: both the fixed-rate and the max-throughput modes are off"))
	}
	if o.Rate.Rate != 0 {
		errs = append(errs, o.Rate.validate())
	}
	if o.Max.Concurrency != 0 {
		errs = append(errs, o.Max.validate())
	}
	if o.Conns < 1 {
		errs = append(errs, fmt.Errorf("--conns %d must be at least 1", o.Conns))
	}
	return errors.Join(errs...)
}

// runInvokeScenario measures one scenario against env in each enabled
// mode.
func runInvokeScenario(ctx context.Context, s invokeScenario, env invokeEnv, o invokeOptions, progress io.Writer) (InvokeResult, error) {
	return runCall(ctx, s, s.target(env), s.pids(env), o, progress)
}

// runCall measures calls of t, labelled as s.
func runCall(ctx context.Context, s invokeScenario, t callTarget, p rolePIDs, o invokeOptions, progress io.Writer) (InvokeResult, error) {
	res := InvokeResult{invokeScenario: s}
	body := rawValue(o.BodySize)
	workers := max(o.Rate.Workers, o.Max.Concurrency)
	c, err := newClients(t, workers, o.Conns)
	if err != nil {
		return res, err
	}
	defer c.Close()
	newWorker, err := invokeWorkers(t, body, c)
	if err != nil {
		return res, err
	}
	probe, err := newWorker(0)
	if err != nil {
		return res, err
	}
	if err := waitReady(ctx, probe, 30*time.Second); err != nil {
		return res, fmt.Errorf("%s: %w", s.ID, err)
	}
	if o.Rate.Rate > 0 {
		fmt.Fprintf(progress, "%s: %g req/s for %v (+%v warm-up)\n", s.ID, o.Rate.Rate, o.Rate.Duration, o.Rate.Warmup)
		m := startCPU(p)
		rr, err := runRate(ctx, o.Rate, newWorker)
		if err != nil {
			return res, fmt.Errorf("%s at %g req/s: %w", s.ID, o.Rate.Rate, err)
		}
		mr := &ModeResult{
			TargetRate: o.Rate.Rate, Workers: o.Rate.Workers,
			Requests: len(rr.Latencies), Errors: rr.Errors, FirstError: rr.FirstError,
			ElapsedSec: rr.Elapsed.Seconds(), ReqPerSec: rr.ReqPerSec(),
		}
		mr.setLatencies(rr.Latencies)
		mr.LagP50Ms, mr.LagP99Ms = ms(percentile(rr.Lags, 50)), ms(percentile(rr.Lags, 99))
		m.stop(rr.Total, mr)
		res.Rate = mr
	}
	if o.Max.Concurrency > 0 {
		fmt.Fprintf(progress, "%s: max throughput, %d workers for %v (+%v warm-up)\n", s.ID, o.Max.Concurrency, o.Max.Duration, o.Max.Warmup)
		var done func()
		if o.Profile != nil {
			done = o.Profile(ctx, s)
		}
		m := startCPU(p)
		lr, err := runLoad(ctx, o.Max, func(id int) (pairFunc, error) {
			f, err := newWorker(id)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context, _ int) error { return f(ctx) }, nil
		})
		if done != nil {
			done()
		}
		if err != nil {
			return res, fmt.Errorf("%s max throughput: %w", s.ID, err)
		}
		mr := &ModeResult{
			Workers:  o.Max.Concurrency,
			Requests: len(lr.Latencies), Errors: lr.Errors, FirstError: lr.FirstError,
			ElapsedSec: lr.Elapsed.Seconds(), ReqPerSec: lr.PairsPerSec(),
		}
		mr.setLatencies(lr.Latencies)
		m.stop(lr.Total, mr)
		res.Max = mr
	}
	return res, nil
}

// rolePIDs are the processes whose CPU a scenario reports; 0 means not on
// the path (or unknown). The load generator is this process.
type rolePIDs struct{ app, a, b int }

// cpuMeter reads the CPU time of the load generator, the app and the two
// sidecars, and of the whole machine, around a run.
type cpuMeter struct {
	pids   [4]int
	before [4]float64
	ok     [4]bool
	busy0  float64
	busyOK bool
	t0     time.Time
}

func startCPU(p rolePIDs) *cpuMeter {
	m := &cpuMeter{pids: [4]int{os.Getpid(), p.app, p.a, p.b}, t0: time.Now()}
	for i, pid := range m.pids {
		if pid != 0 {
			m.before[i], m.ok[i] = procCPUSeconds(pid)
		}
	}
	m.busy0, m.busyOK = machineBusySeconds()
	return m
}

// stop fills r's CPU figures for total requests (warm-up included, as the
// CPU times are).
func (m *cpuMeter) stop(total int, r *ModeResult) {
	wall := time.Since(m.t0).Seconds()
	var used [4]float64
	known := 0.0
	for i, pid := range m.pids {
		if pid == 0 || !m.ok[i] {
			continue
		}
		after, ok := procCPUSeconds(pid)
		if !ok {
			m.ok[i] = false
			continue
		}
		used[i] = after - m.before[i]
		known += used[i]
	}
	perReq := func(i int) float64 {
		if !m.ok[i] || m.pids[i] == 0 || total == 0 {
			return 0
		}
		return used[i] * 1e6 / float64(total)
	}
	r.GenCPUUs, r.AppCPUUs, r.SidecarACPUUs, r.SidecarBCPUUs = perReq(0), perReq(1), perReq(2), perReq(3)
	if sc := used[2] + used[3]; sc > 0 && total > 0 {
		r.ReqPerSidecarCore = float64(total) / sc
	}
	if busy1, ok := machineBusySeconds(); ok && m.busyOK && wall > 0 {
		r.OtherCores = max(0, (busy1-m.busy0-known)/wall)
	}
}

// invokeAllOptions shape `mecha bench invoke-all`.
type invokeAllOptions struct {
	Invoke    invokeOptions
	Binary    string
	Scenarios []invokeScenario
	// ProfileDir, when set, receives CPU profiles of both sidecars and the
	// app during the max-throughput run of ProfileScenario.
	ProfileDir      string
	ProfileScenario string
}

// runInvokeAll starts the app and sidecar A from o.Binary, then, for each
// app kind the scenarios need, sidecar B in front of it, and measures every
// scenario. Every process is stopped by its PID and the temporary
// directory (registry included) removed before it returns.
func runInvokeAll(ctx context.Context, o invokeAllOptions, progress io.Writer) (rep *InvokeReport, err error) {
	rep = &InvokeReport{Machine: thisMachine(), Settings: invokeSettings(o.Invoke)}
	tmp, err := os.MkdirTemp("", "mecha-bench-invoke-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	resources := filepath.Join(tmp, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, err
	}
	// The sidecars find each other in this registry only.
	env := append(os.Environ(), "MECHA_HOME="+filepath.Join(tmp, "home"))
	prefix := fmt.Sprintf("mecha-bench-%d", os.Getpid())
	prof := newProfiler(o.ProfileDir, o.ProfileScenario, o.Invoke.Max)

	appEnv, err := prof.env(env, "app")
	if err != nil {
		return nil, err
	}
	app, err := startApp(ctx, o.Binary, tmp, o.Invoke.BodySize, appEnv)
	if err != nil {
		return nil, err
	}
	defer app.Stop()
	fmt.Fprintf(progress, "started app pid %d: http %s grpc %s\n", app.PID(), app.httpAddr, app.grpcAddr)

	start := func(name, appID string, args ...string) (*sidecarProc, error) {
		senv, err := prof.env(env, name)
		if err != nil {
			return nil, err
		}
		return startHealthy(ctx, sidecarSpec{Name: name, Binary: o.Binary, AppID: appID, ResourcesDir: resources, LogDir: tmp, Env: senv, Internal: true, Args: args}, progress)
	}
	a, err := start("sidecar-a", prefix+"-caller")
	if err != nil {
		return nil, err
	}
	defer a.Stop()
	ie := invokeEnv{
		App: endpoint{HTTPAddr: app.httpAddr, GRPCAddr: app.grpcAddr, PID: app.PID()},
		A:   endpoint{HTTPAddr: a.httpAddr, GRPCAddr: a.grpcAddr, AppID: prefix + "-caller", PID: a.PID()},
	}
	o.Invoke.Profile = prof.hook(progress)
	for _, kind := range []string{appHTTP, appGRPC} {
		var todo []invokeScenario
		for _, s := range o.Scenarios {
			if s.App == kind {
				todo = append(todo, s)
			}
		}
		if len(todo) == 0 {
			continue
		}
		port := portOf(app.httpAddr)
		if kind == appGRPC {
			port = portOf(app.grpcAddr)
		}
		appID := prefix + "-" + kind + "-app"
		b, err := start("sidecar-b-"+kind, appID, "--app-port", port, "--app-protocol", kind)
		if err != nil {
			return nil, err
		}
		ie.B = endpoint{HTTPAddr: b.httpAddr, GRPCAddr: b.grpcAddr, AppID: appID, PID: b.PID()}
		prof.setTargets(map[string]string{"sidecar-a": a.pprofAddr, "sidecar-b": b.pprofAddr, "app": app.pprofAddr})
		for _, s := range todo {
			r, err := runInvokeScenario(ctx, s, ie, o.Invoke, progress)
			if err != nil {
				err = errors.Join(err, exitedProcs(app, a, b))
				_ = b.Stop()
				return nil, err
			}
			rep.Results = append(rep.Results, r)
		}
		rss, _ := procRSSMB(b.PID())
		rep.SidecarRSSMB = max(rep.SidecarRSSMB, rss)
		// Only two sidecars at a time: B goes before the next app's B.
		if err := b.Stop(); err != nil {
			return nil, err
		}
	}
	rss, _ := procRSSMB(a.PID())
	rep.SidecarRSSMB = max(rep.SidecarRSSMB, rss)
	if err := a.Stop(); err != nil {
		return nil, err
	}
	if err := app.Stop(); err != nil {
		return nil, err
	}
	if err := prof.err(); err != nil {
		return nil, err
	}
	rep.Comparisons = compareInvoke(rep)
	return rep, nil
}

// startHealthy starts the sidecar spec describes and waits until it is
// healthy; when it is not, it is stopped. The caller must call Stop.
func startHealthy(ctx context.Context, spec sidecarSpec, progress io.Writer) (*sidecarProc, error) {
	p, err := startSidecar(spec)
	if err != nil {
		return nil, err
	}
	if _, err := p.waitHealthy(ctx, 5*time.Millisecond, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	fmt.Fprintf(progress, "started %s pid %d (app id %s): http %s grpc %s internal %s\n", spec.Name, p.PID(), spec.AppID, p.httpAddr, p.grpcAddr, p.internalAddr)
	return p, nil
}

// exitedProcs names the processes that have exited, with their logs.
func exitedProcs(ps ...*sidecarProc) error {
	var errs []error
	for _, p := range ps {
		select {
		case <-p.exited:
			errs = append(errs, fmt.Errorf("%s (pid %d) exited (%v): %s", p.name, p.PID(), p.waitErr, p.logTail()))
		default:
		}
	}
	return errors.Join(errs...)
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// profiler collects CPU profiles of the processes invoke-all starts, each
// serving pprofListener's endpoint (enabled by pprofEnv), during the
// max-throughput run of one scenario.
type profiler struct {
	dir, scenario string
	// delay and length place the profile in the measured window.
	delay, length time.Duration
	mu            sync.Mutex
	targets       map[string]string
	firstErr      error
}

func newProfiler(dir, scenario string, o loadOptions) *profiler {
	return &profiler{dir: dir, scenario: scenario, delay: o.Warmup, length: o.Duration}
}

// env returns base plus, when profiling, the variable that makes process
// name serve profiles on a free loopback port.
func (p *profiler) env(base []string, name string) ([]string, error) {
	if p.dir == "" {
		return base, nil
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	return append(base[:len(base):len(base)], fmt.Sprintf("%s=127.0.0.1:%d", pprofEnv, ports[0])), nil
}

func (p *profiler) setTargets(t map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = t
}

func (p *profiler) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

// hook is invokeOptions.Profile: for the chosen scenario it fetches a CPU
// profile of every target for the measured window of the run (after the
// warm-up) and returns a function that waits for them.
func (p *profiler) hook(progress io.Writer) func(ctx context.Context, s invokeScenario) func() {
	if p.dir == "" {
		return nil
	}
	return func(ctx context.Context, s invokeScenario) func() {
		if s.ID != p.scenario {
			return func() {}
		}
		p.mu.Lock()
		targets := p.targets
		p.mu.Unlock()
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for name, addr := range targets {
			if addr == "" {
				continue
			}
			file := filepath.Join(p.dir, s.ID+"-"+name+".pprof")
			wg.Go(func() {
				err := fetchProfile(ctx, addr, file, p.delay, p.length)
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil {
					if p.firstErr == nil {
						p.firstErr = fmt.Errorf("profiling %s: %w", name, err)
					}
					return
				}
				fmt.Fprintf(progress, "wrote %s\n", file)
			})
		}
		return func() {
			wg.Wait()
			cancel()
		}
	}
}
