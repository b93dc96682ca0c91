package tracing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing/tracingtest"
)

// exportDelay is the batch timeout of the sidecars the tests start, so
// that spans arrive quickly.
const exportDelay = 100 * time.Millisecond

func TestMain(m *testing.M) {
	os.Setenv("OTEL_BSP_SCHEDULE_DELAY", fmt.Sprint(exportDelay.Milliseconds()))
	os.Exit(m.Run())
}

// tracingConfig writes a Configuration with spec.tracing at rate that
// exports to the OTLP/gRPC endpoint addr (none when addr is empty).
func tracingConfig(t testing.TB, rate, addr string) string {
	t.Helper()
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n    samplingRate: \"" + rate + "\"\n"
	if addr != "" {
		doc += "    otel:\n      endpointAddress: \"" + addr + "\"\n      isSecure: false\n      protocol: grpc\n"
	}
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func withConfig(file string, more ...func(*runtime.Options)) func(*runtime.Options) {
	return func(o *runtime.Options) {
		o.ConfigFiles = []string{file}
		for _, m := range more {
			m(o)
		}
	}
}

// A sampled W3C context the "app A" of the tests starts with.
const (
	traceA  = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentA = "00f067aa0ba902b7"
	tpA     = "00-" + traceA + "-" + parentA + "-01"
)

// appB is the invoked app: it records the trace headers it receives and
// saves state through its own sidecar with the traceparent it was given,
// as an instrumented app would.
type appB struct {
	sidecar atomic.Pointer[string] // the HTTP API base of its sidecar
	mu      sync.Mutex
	got     []string // traceparent of each call received
	state   []string // tracestate of each call received
}

func (a *appB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/hello" {
		http.NotFound(w, r)
		return
	}
	tp := r.Header.Get("traceparent")
	a.mu.Lock()
	a.got = append(a.got, tp)
	a.state = append(a.state, r.Header.Get("tracestate"))
	a.mu.Unlock()
	base := a.sidecar.Load()
	if base == nil {
		http.Error(w, "no sidecar yet", http.StatusServiceUnavailable)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, *base+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":"v"}]`))
	req.Header.Set("Content-Type", "application/json")
	if tp != "" {
		req.Header.Set("traceparent", tp)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		http.Error(w, fmt.Sprintf("save: %d %s", resp.StatusCode, b), http.StatusBadGateway)
		return
	}
	_, _ = io.WriteString(w, "hi")
}

func (a *appB) last() (tp, ts string, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		return "", "", 0
	}
	return a.got[len(a.got)-1], a.state[len(a.state)-1], len(a.got)
}

// twoSidecars starts sidecar A (app id appa, no app: the test is its app)
// and sidecar B (appb, with app) with the given Configuration.
func twoSidecars(t *testing.T, cfg string) (a, b *mechatest.Sidecar, app *appB) {
	t.Helper()
	app = &appB{}
	port := mechatest.HTTPApp(t, app)
	b = mechatest.Start(t, withConfig(cfg, mechatest.App("appb", port, "")), mechatest.InMemory)
	app.sidecar.Store(&b.URL)
	a = mechatest.Start(t, withConfig(cfg, func(o *runtime.Options) { o.AppID = "appa" }))
	mechatest.Eventually(t, 10*time.Second, func() error { return b.RT.Ready() })
	return a, b, app
}

func parse(t testing.TB, tp string) trace.SpanContext {
	t.Helper()
	sc, ok := tracing.ParseTraceParent(tp, "")
	if !ok {
		t.Fatalf("traceparent %q is not valid", tp)
	}
	return sc
}

func byName(service, name, kind string) func(tracingtest.Span) bool {
	return func(s tracingtest.Span) bool { return s.Service == service && s.Name == name && s.Kind == kind }
}

// TestInvokeChainIsOneTrace: app A → sidecar A (HTTP invoke) → sidecar B →
// app B, which saves state through sidecar B: every span is in the trace
// app A started, each the child of the one before, and app B receives the
// callee sidecar's span as its parent.
func TestInvokeChainIsOneTrace(t *testing.T) {
	rcv := tracingtest.Start(t)
	a, _, app := twoSidecars(t, tracingConfig(t, "1", rcv.Addr()))

	resp := a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping", "traceparent", tpA, "tracestate", "vendor=x")
	if resp.Status != http.StatusOK || string(resp.Body) != "hi" {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	if got := parse(t, resp.Header.Get("traceparent")); got.TraceID().String() != traceA {
		t.Errorf("response traceparent %s is not in trace %s", resp.Header.Get("traceparent"), traceA)
	}
	appTP, appTS, _ := app.last()
	appSC := parse(t, appTP)
	if appSC.TraceID().String() != traceA || !appSC.IsSampled() {
		t.Fatalf("app B got traceparent %q, want trace %s, sampled", appTP, traceA)
	}
	if appTS != "vendor=x" {
		t.Errorf("app B got tracestate %q, want vendor=x", appTS)
	}

	var apiA, clientA, serverB, apiB tracingtest.Span
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		var ok [4]bool
		apiA, ok[0] = tracingtest.Find(spans, byName("appa", "CallLocal/appb/hello", "server"))
		clientA, ok[1] = tracingtest.Find(spans, byName("appa", "CallLocal/appb/hello", "client"))
		serverB, ok[2] = tracingtest.Find(spans, byName("appb", "CallLocal/appb/hello", "server"))
		apiB, ok[3] = tracingtest.Find(spans, byName("appb", "POST /v1.0/state/{store}", "server"))
		for i, o := range ok {
			if !o {
				return fmt.Errorf("span %d of the chain not received yet", i)
			}
		}
		return nil
	})
	chain := []struct {
		name   string
		span   tracingtest.Span
		parent string
	}{
		{"sidecar A API", apiA, parentA},
		{"sidecar A client", clientA, apiA.SpanID},
		{"sidecar B CallLocal", serverB, clientA.SpanID},
		{"sidecar B state API", apiB, appSC.SpanID().String()},
	}
	for _, c := range chain {
		if c.span.TraceID != traceA {
			t.Errorf("%s: trace %s, want %s", c.name, c.span.TraceID, traceA)
		}
		if c.span.ParentSpanID != c.parent {
			t.Errorf("%s: parent %s, want %s", c.name, c.span.ParentSpanID, c.parent)
		}
	}
	if appSC.SpanID().String() != serverB.SpanID {
		t.Errorf("app B's parent is span %s, want sidecar B's CallLocal span %s", appSC.SpanID(), serverB.SpanID)
	}
	// The store call is the state API span's db.operation, as daprd's one
	// span per state call: no span of its own.
	if _, ok := tracingtest.Find(rcv.Spans(), func(sp tracingtest.Span) bool { return sp.ParentSpanID == apiB.SpanID }); ok {
		t.Error("the state API span has a child span")
	}
	for k, want := range map[string]string{"rpc.service": "ServiceInvocation", "net.peer.name": "appb", "dapr.invoke_method": "hello"} {
		if got := apiA.Attributes[k]; got != want {
			t.Errorf("invoke API span %s = %q, want %q", k, got, want)
		}
	}
	for k, want := range map[string]string{"db.system": "state", "db.name": "statestore", "db.operation": "set", "dapr.status_code": "204", "dapr.protocol": "http", "http.request.method": "POST"} {
		if got := apiB.Attributes[k]; got != want {
			t.Errorf("state API span %s = %q, want %q", k, got, want)
		}
	}

	// A parent that is not sampled is followed: the trace goes on (new span
	// ids, same trace id, not sampled) and nothing of it is exported.
	const traceU = "0af7651916cd43dd8448eb211c80319c"
	resp = a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping", "traceparent", "00-"+traceU+"-b7ad6b7169203331-00")
	if resp.Status != http.StatusOK {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	appTP, _, _ = app.last()
	if sc := parse(t, appTP); sc.TraceID().String() != traceU || sc.IsSampled() || sc.SpanID().String() == "b7ad6b7169203331" {
		t.Errorf("app B got %s for an unsampled parent in trace %s", appTP, traceU)
	}
	time.Sleep(10 * exportDelay)
	for _, s := range rcv.Spans() {
		if s.TraceID == traceU {
			t.Errorf("a span of an unsampled trace was exported: %v", s)
		}
	}
}

// TestMalformedTraceparentIsReplaced: a traceparent that is not W3C is not
// passed on: sidecar A starts a new trace, whose root is its API span, and
// that trace reaches app B.
func TestMalformedTraceparentIsReplaced(t *testing.T) {
	rcv := tracingtest.Start(t)
	a, _, app := twoSidecars(t, tracingConfig(t, "1", rcv.Addr()))
	malformed := []string{
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper case
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",    // no flags
		"garbage",
	}
	for i, bad := range malformed {
		method := fmt.Sprintf("hello?case=%d", i)
		resp := a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/"+method, "ping", "traceparent", bad, "tracestate", "vendor=x")
		if resp.Status != http.StatusOK {
			t.Fatalf("invoke with traceparent %q: %d %s", bad, resp.Status, resp.Body)
		}
		appTP, appTS, _ := app.last()
		sc := parse(t, appTP)
		if appTP == bad || sc.TraceID().String() == traceA {
			t.Errorf("traceparent %q reached app B as %q", bad, appTP)
		}
		if appTS != "" {
			t.Errorf("the tracestate of a replaced traceparent reached app B: %q", appTS)
		}
		if got := parse(t, resp.Header.Get("traceparent")); got.TraceID() != sc.TraceID() {
			t.Errorf("response trace %s, app B's %s", got.TraceID(), sc.TraceID())
		}
		rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
			root, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool {
				return s.Service == "appa" && s.Kind == "server" && s.TraceID == sc.TraceID().String()
			})
			if !ok {
				return fmt.Errorf("no API span in trace %s", sc.TraceID())
			}
			if root.ParentSpanID != "" {
				return fmt.Errorf("the API span has parent %s; want a new root", root.ParentSpanID)
			}
			return nil
		})
	}
}

// TestSamplingRateZero exports nothing, yet every hop still gets a valid
// traceparent: a new trace when the app sent none, the app's trace (and
// its sampled flag) when it sent one.
func TestSamplingRateZero(t *testing.T) {
	rcv := tracingtest.Start(t)
	a, _, app := twoSidecars(t, tracingConfig(t, "0", rcv.Addr()))

	resp := a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping")
	if resp.Status != http.StatusOK {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	tp, _, _ := app.last()
	sc := parse(t, tp)
	if sc.IsSampled() {
		t.Errorf("a trace started at rate 0 is sampled: %s", tp)
	}
	if got := parse(t, resp.Header.Get("traceparent")); got.TraceID() != sc.TraceID() {
		t.Errorf("response trace %s, app B's %s", got.TraceID(), sc.TraceID())
	}

	resp = a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping", "traceparent", tpA)
	if resp.Status != http.StatusOK {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	tp, _, _ = app.last()
	sc = parse(t, tp)
	if sc.TraceID().String() != traceA || !sc.IsSampled() || sc.SpanID().String() == parentA {
		t.Errorf("app B got %s; want trace %s, sampled, a span id of the sidecars'", tp, traceA)
	}
	// Several batch timeouts: a span recorded would have been sent.
	time.Sleep(10 * exportDelay)
	if n := rcv.Count(); n != 0 {
		t.Fatalf("rate 0 exported %d spans: %v", n, rcv.Spans())
	}
}

// TestPublishDeliveryIsOneTrace: the event published under app A's trace
// carries the producer span in its CloudEvent, the delivery continues it,
// and the subscriber receives the delivery span as its parent.
func TestPublishDeliveryIsOneTrace(t *testing.T) {
	rcv := tracingtest.Start(t)
	type delivery struct {
		header string
		ce     map[string]any
	}
	got := make(chan delivery, 1)
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/orders" {
			http.NotFound(w, r)
			return
		}
		var ce map[string]any
		_ = json.NewDecoder(r.Body).Decode(&ce)
		select {
		case got <- delivery{header: r.Header.Get("traceparent"), ce: ce}:
		default:
		}
	}))
	sub := "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: /orders\n"
	s := mechatest.Start(t, withConfig(tracingConfig(t, "1", rcv.Addr()), mechatest.App("shop", port, "")),
		mechatest.Component("pubsub", "pubsub.in-memory"), sub)
	mechatest.Eventually(t, 10*time.Second, func() error { return s.RT.Ready() })

	resp := s.Do(t, http.MethodPost, "/v1.0/publish/pubsub/orders", `{"n":1}`, "Content-Type", "application/json", "traceparent", tpA)
	if resp.Status != http.StatusNoContent {
		t.Fatalf("publish: %d %s", resp.Status, resp.Body)
	}
	var d delivery
	select {
	case d = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was not delivered")
	}
	ceTP, _ := d.ce["traceparent"].(string)
	ceSC, appSC := parse(t, ceTP), parse(t, d.header)
	if ceSC.TraceID().String() != traceA || appSC.TraceID().String() != traceA {
		t.Fatalf("CloudEvent traceparent %s, delivery header %s: want trace %s", ceTP, d.header, traceA)
	}
	if d.ce["traceid"] != ceTP {
		t.Errorf("CloudEvent traceid %v, traceparent %s", d.ce["traceid"], ceTP)
	}

	var api, publish, deliver tracingtest.Span
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		var ok [3]bool
		api, ok[0] = tracingtest.Find(spans, byName("shop", "POST /v1.0/publish/pubsub/orders", "server"))
		if !ok[0] {
			api, ok[0] = tracingtest.Find(spans, func(s tracingtest.Span) bool { return s.Kind == "server" && strings.Contains(s.Name, "/v1.0/publish/") })
		}
		publish, ok[1] = tracingtest.Find(spans, byName("shop", "pubsub.publish orders", "producer"))
		deliver, ok[2] = tracingtest.Find(spans, byName("shop", "pubsub/orders", "consumer"))
		for i, o := range ok {
			if !o {
				return fmt.Errorf("span %d not received yet", i)
			}
		}
		return nil
	})
	for _, c := range []struct {
		name         string
		span         tracingtest.Span
		parent, want string
	}{
		{"publish API", api, api.ParentSpanID, parentA},
		{"producer", publish, publish.ParentSpanID, api.SpanID},
		{"CloudEvent traceparent", publish, ceSC.SpanID().String(), publish.SpanID},
		{"delivery", deliver, deliver.ParentSpanID, publish.SpanID},
		{"subscriber's parent", deliver, appSC.SpanID().String(), deliver.SpanID},
	} {
		if c.span.TraceID != traceA {
			t.Errorf("%s: trace %s, want %s", c.name, c.span.TraceID, traceA)
		}
		if c.parent != c.want {
			t.Errorf("%s: %s, want %s", c.name, c.parent, c.want)
		}
	}
	for k, want := range map[string]string{"messaging.system": "pubsub", "messaging.destination.name": "orders"} {
		if deliver.Attributes[k] != want || publish.Attributes[k] != want {
			t.Errorf("%s: delivery %q, publish %q, want %q", k, deliver.Attributes[k], publish.Attributes[k], want)
		}
	}
}

// TestGRPCTraceBin: the gRPC API continues a trace given in Dapr's binary
// grpc-trace-bin metadata (or as traceparent) and answers with its own
// span in grpc-trace-bin.
func TestGRPCTraceBin(t *testing.T) {
	rcv := tracingtest.Start(t)
	s := mechatest.Start(t, withConfig(tracingConfig(t, "1", rcv.Addr())), mechatest.InMemory)
	sc := parse(t, tpA)
	cases := []struct {
		name string
		md   metadata.MD
	}{
		{"grpc-trace-bin", metadata.MD{"grpc-trace-bin": {string(tracing.BinaryFromSpanContext(sc))}}},
		{"traceparent", metadata.MD{"traceparent": {tpA}}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.NewOutgoingContext(context.Background(), c.md)
			var header metadata.MD
			key := fmt.Sprintf("k%d", i)
			_, err := s.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: key, Value: []byte("v")}}}, grpc.Header(&header))
			if err != nil {
				t.Fatal(err)
			}
			bin := header.Get("grpc-trace-bin")
			if len(bin) == 0 {
				t.Fatal("no grpc-trace-bin in the response header")
			}
			back, ok := tracing.SpanContextFromBinary([]byte(bin[0]))
			if !ok || back.TraceID().String() != traceA {
				t.Fatalf("response grpc-trace-bin: %v %v", back, ok)
			}
			rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
				api, ok := tracingtest.Find(spans, func(sp tracingtest.Span) bool {
					return sp.Name == "/dapr.proto.runtime.v1.Dapr/SaveState" && sp.SpanID == back.SpanID().String()
				})
				if !ok {
					return fmt.Errorf("no SaveState span %s", back.SpanID())
				}
				if api.TraceID != traceA || api.ParentSpanID != parentA || api.Kind != "server" {
					return fmt.Errorf("SaveState span %v", api)
				}
				if api.Attributes["db.name"] != "statestore" || api.Attributes["db.operation"] != "set" || api.Attributes["rpc.service"] != "Dapr" {
					return fmt.Errorf("SaveState attributes %v", api.Attributes)
				}
				return nil
			})
		})
	}
}

// blackhole accepts connections and never answers: an OTLP endpoint that
// hangs every export.
func blackhole(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestUnreachableEndpointDoesNotSlowCalls: with an OTLP endpoint that
// accepts connections and never answers, and every request sampled, calls
// run at the speed of a sidecar without tracing (the queue drops what it
// cannot send), and shutdown does not wait for the endpoint.
func TestUnreachableEndpointDoesNotSlowCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a few thousand requests")
	}
	run := func(s *mechatest.Sidecar, n int) (total, worst time.Duration) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		defer c.CloseIdleConnections()
		start := time.Now()
		for i := 0; i < n; i++ {
			t0 := time.Now()
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1.0/state/statestore", strings.NewReader(`[{"key":"k","value":"v"}]`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("save: %d", resp.StatusCode)
			}
			worst = max(worst, time.Since(t0))
		}
		return time.Since(start), worst
	}
	const n = 3000 // 6,000 spans: three times the export queue
	plain := mechatest.Start(t, nil, mechatest.InMemory)
	stuck := mechatest.Start(t, withConfig(tracingConfig(t, "1", blackhole(t))), mechatest.InMemory)
	run(plain, 200) // warm both up
	run(stuck, 200)
	plainTotal, _ := run(plain, n)
	stuckTotal, worst := run(stuck, n)
	t.Logf("%d saves: %v without tracing, %v with an unreachable endpoint (slowest call %v)", n, plainTotal, stuckTotal, worst)
	if stuckTotal > 2*plainTotal+time.Second {
		t.Errorf("with an unreachable endpoint %d calls took %v, without tracing %v", n, stuckTotal, plainTotal)
	}
	if worst > time.Second {
		t.Errorf("a call took %v: an export blocked it", worst)
	}
	start := time.Now()
	if err := stuck.RT.Close(context.Background()); err != nil {
		t.Logf("close: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("shutdown took %v with an unreachable endpoint", d)
	}
}

// TestCountingReceiver: the benchmarks' receiver counts exactly the spans
// sent (one per state save: the API span, whose db.operation the store
// call is).
func TestCountingReceiver(t *testing.T) {
	rcv := tracingtest.StartCounter(t)
	s := mechatest.Start(t, withConfig(tracingConfig(t, "1", rcv.Addr())), mechatest.InMemory)
	for i := 0; i < 5; i++ {
		if resp := s.Do(t, http.MethodPost, "/v1.0/state/statestore", `[{"key":"k","value":"v"}]`, "Content-Type", "application/json"); resp.Status != http.StatusNoContent {
			t.Fatalf("save: %d %s", resp.Status, resp.Body)
		}
	}
	mechatest.Eventually(t, 10*time.Second, func() error {
		if n := rcv.Count(); n != 5 {
			return fmt.Errorf("%d spans counted, want 5", n)
		}
		return nil
	})
}

// actorApp hosts actor type Counter and records the traceparent of each
// method call.
type actorApp struct {
	mu  sync.Mutex
	got []string
}

func (a *actorApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/dapr/config":
		io.WriteString(w, `{"entities":["Counter"],"actorIdleTimeout":"1h","actorScanInterval":"1h"}`)
	case strings.HasPrefix(r.URL.Path, "/actors/Counter/") && strings.Contains(r.URL.Path, "/method/"):
		a.mu.Lock()
		a.got = append(a.got, r.Header.Get("traceparent"))
		a.mu.Unlock()
		io.WriteString(w, "hi")
	}
}

func (a *actorApp) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.got) == 0 {
		return ""
	}
	return a.got[len(a.got)-1]
}

// hosting waits until s's actor runtime runs with a table.
func hosting(t *testing.T, s *mechatest.Sidecar) {
	t.Helper()
	mechatest.Eventually(t, 10*time.Second, func() error {
		var md struct {
			ActorRuntime struct {
				RuntimeStatus string `json:"runtimeStatus"`
				HostReady     bool   `json:"hostReady"`
			} `json:"actorRuntime"`
		}
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
		if md.ActorRuntime.RuntimeStatus != "RUNNING" || !md.ActorRuntime.HostReady {
			return fmt.Errorf("actor runtime %+v", md.ActorRuntime)
		}
		return nil
	})
}

// TestActorCallIsOneTrace: app A calls an actor through sidecar A, which
// forwards the call to sidecar B, the actor's host, which calls app B:
// the API span, the forward, B's server span and the call to the app are
// one chain in the trace app A started, with the actor's type, id and
// method as attributes, and app B gets the last span as its parent.
func TestActorCallIsOneTrace(t *testing.T) {
	rcv := tracingtest.Start(t)
	cfg := tracingConfig(t, "1", rcv.Addr())
	cluster := actorstest.NewCluster()
	placed := func(o *runtime.Options) { o.ActorPlacement = cluster.Placement() }
	app := &actorApp{}
	b := mechatest.Start(t, withConfig(cfg, mechatest.App("appb", mechatest.HTTPApp(t, app), ""), placed), mechatest.InMemory)
	a := mechatest.Start(t, withConfig(cfg, func(o *runtime.Options) { o.AppID = "appa" }, placed))
	hosting(t, b)
	hosting(t, a)

	resp := a.Do(t, http.MethodPost, "/v1.0/actors/Counter/c1/method/hello", "ping", "traceparent", tpA)
	if resp.Status != http.StatusOK || string(resp.Body) != "hi" {
		t.Fatalf("actor call: %d %s", resp.Status, resp.Body)
	}
	appSC := parse(t, app.last())
	if appSC.TraceID().String() != traceA || !appSC.IsSampled() {
		t.Fatalf("app B got traceparent %q, want trace %s, sampled", app.last(), traceA)
	}

	var api, fwd, server, call tracingtest.Span
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		var ok [4]bool
		api, ok[0] = tracingtest.Find(spans, byName("appa", "CallActor/Counter/hello", "server"))
		fwd, ok[1] = tracingtest.Find(spans, byName("appa", "CallActor/Counter/hello", "client"))
		server, ok[2] = tracingtest.Find(spans, byName("appb", "CallActor/Counter/hello", "server"))
		call, ok[3] = tracingtest.Find(spans, byName("appb", "actors/Counter/hello", "client"))
		for i, o := range ok {
			if !o {
				return fmt.Errorf("span %d of the chain not received yet", i)
			}
		}
		return nil
	})
	for _, c := range []struct {
		name   string
		span   tracingtest.Span
		parent string
	}{
		{"sidecar A API", api, parentA},
		{"sidecar A forward", fwd, api.SpanID},
		{"sidecar B CallActor", server, fwd.SpanID},
		{"sidecar B call to the app", call, server.SpanID},
	} {
		if c.span.TraceID != traceA || c.span.ParentSpanID != c.parent {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", c.name, c.span.TraceID, c.span.ParentSpanID, traceA, c.parent)
		}
		for k, want := range map[string]string{"dapr.actor": "Counter.c1", "dapr.actor.type": "Counter", "dapr.actor.id": "c1", "dapr.invoke_method": "hello"} {
			if got := c.span.Attributes[k]; got != want {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got, want)
			}
		}
	}
	if appSC.SpanID().String() != call.SpanID {
		t.Errorf("app B's parent is span %s, want the call's span %s", appSC.SpanID(), call.SpanID)
	}
	if api.Attributes["rpc.service"] != "ServiceInvocation" || api.Attributes["dapr.protocol"] != "http" {
		t.Errorf("API span attributes %v", api.Attributes)
	}

	// The gRPC API's InvokeActor span is named and annotated the same way.
	const traceG = "0af7651916cd43dd8448eb211c80319c"
	ctx := metadata.NewOutgoingContext(context.Background(), metadata.MD{"traceparent": {"00-" + traceG + "-b7ad6b7169203331-01"}})
	if _, err := a.Dapr.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Counter", ActorId: "c2", Method: "hello"}); err != nil {
		t.Fatalf("gRPC InvokeActor: %v", err)
	}
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		g, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool {
			return s.Service == "appa" && s.Kind == "server" && s.TraceID == traceG
		})
		if !ok {
			return fmt.Errorf("no gRPC API span in trace %s", traceG)
		}
		if g.Name != "CallActor/Counter/hello" || g.Attributes["dapr.actor"] != "Counter.c2" || g.Attributes["rpc.service"] != "ServiceInvocation" || g.Attributes["dapr.protocol"] != "grpc" {
			return fmt.Errorf("gRPC InvokeActor span %v %v", g, g.Attributes)
		}
		if _, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool {
			return s.Service == "appb" && s.Name == "actors/Counter/hello" && s.TraceID == traceG
		}); !ok {
			return fmt.Errorf("no call to the app in trace %s", traceG)
		}
		return nil
	})
}

// TestBulkDeliveryAndInputBindingSpans: each entry of a bulk delivery gets
// its own "pubsub/<topic>" span in the trace of its event, the app gets
// the first entry's span as its parent; an input binding event gets a
// "bindings/<name>" span that is the app's parent.
func TestBulkDeliveryAndInputBindingSpans(t *testing.T) {
	rcv := tracingtest.Start(t)
	bulkTP := make(chan string, 10)
	cronTP := make(chan string, 10)
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/orders":
			var env struct {
				Entries []struct {
					EntryID string `json:"entryId"`
				} `json:"entries"`
			}
			_ = json.NewDecoder(r.Body).Decode(&env)
			if len(env.Entries) == 2 {
				bulkTP <- r.Header.Get("traceparent")
			}
			w.Header().Set("Content-Type", "application/json")
			out := `{"statuses":[`
			for i, e := range env.Entries {
				if i > 0 {
					out += ","
				}
				out += `{"entryId":"` + e.EntryID + `","status":"SUCCESS"}`
			}
			io.WriteString(w, out+`]}`)
		case "/tick":
			if r.Method == http.MethodPost {
				select {
				case cronTP <- r.Header.Get("traceparent"):
				default:
				}
			}
		}
	}))
	sub := "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\nspec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: /orders\n" +
		"  bulkSubscribe:\n    enabled: true\n    maxMessagesCount: 2\n    maxAwaitDurationMs: 5000\n"
	s := mechatest.Start(t, withConfig(tracingConfig(t, "1", rcv.Addr()), mechatest.App("shop", port, "")),
		mechatest.Component("pubsub", "pubsub.in-memory"), sub,
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s", "direction", "input"))
	mechatest.Eventually(t, 10*time.Second, func() error { return s.RT.Ready() })

	const traceB = "0af7651916cd43dd8448eb211c80319c"
	for _, tp := range []string{tpA, "00-" + traceB + "-b7ad6b7169203331-01"} {
		if resp := s.Do(t, http.MethodPost, "/v1.0/publish/pubsub/orders", `{"n":1}`, "Content-Type", "application/json", "traceparent", tp); resp.Status != http.StatusNoContent {
			t.Fatalf("publish: %d %s", resp.Status, resp.Body)
		}
	}
	var appTP string
	select {
	case appTP = <-bulkTP:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch of 2 was delivered")
	}
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		for _, tr := range []string{traceA, traceB} {
			pub, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool { return s.Name == "pubsub.publish orders" && s.TraceID == tr })
			if !ok {
				return fmt.Errorf("no publish span in trace %s", tr)
			}
			del, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool {
				return s.Name == "pubsub/orders" && s.Kind == "consumer" && s.TraceID == tr
			})
			if !ok {
				return fmt.Errorf("no delivery span in trace %s", tr)
			}
			if del.ParentSpanID != pub.SpanID || del.Attributes["messaging.destination.name"] != "orders" {
				return fmt.Errorf("delivery span %v (attributes %v), want the child of publish span %s", del, del.Attributes, pub.SpanID)
			}
			if sc := parse(t, appTP); sc.TraceID().String() == tr && sc.SpanID().String() != del.SpanID {
				return fmt.Errorf("the app's parent %s is not the delivery span %s of its trace", sc.SpanID(), del.SpanID)
			}
		}
		return nil
	})

	var tick string
	select {
	case tick = <-cronTP:
	case <-time.After(10 * time.Second):
		t.Fatal("the cron binding delivered nothing")
	}
	sc := parse(t, tick)
	rcv.Wait(t, 15*time.Second, func(spans []tracingtest.Span) error {
		sp, ok := tracingtest.Find(spans, func(s tracingtest.Span) bool { return s.SpanID == sc.SpanID().String() })
		if !ok {
			return fmt.Errorf("no span %s", sc.SpanID())
		}
		if sp.Name != "bindings/tick" || sp.Kind != "consumer" || sp.Attributes["db.system"] != "bindings" || sp.Attributes["db.name"] != "tick" {
			return fmt.Errorf("the binding delivery span is %v %v", sp, sp.Attributes)
		}
		return nil
	})
}

// TestNoTracingConfig: without spec.tracing nothing is recorded, yet the
// app always gets a valid traceparent: a new, unsampled trace when the
// caller sent none or a malformed one, and the caller's own, unchanged
// (with its tracestate), when it is valid, across both sidecars.
func TestNoTracingConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: notracing\nspec: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, _, app := twoSidecars(t, f)

	resp := a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping")
	if resp.Status != http.StatusOK {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	tp, ts, _ := app.last()
	sc := parse(t, tp)
	if sc.IsSampled() || ts != "" {
		t.Errorf("without a caller's trace app B got %q / %q, want a new unsampled trace", tp, ts)
	}
	resp = a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping")
	if tp2, _, _ := app.last(); resp.Status != http.StatusOK || parse(t, tp2).TraceID() == sc.TraceID() {
		t.Errorf("two calls without a trace shared trace %s", sc.TraceID())
	}

	resp = a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping", "traceparent", tpA, "tracestate", "vendor=x")
	if tp, ts, _ := app.last(); resp.Status != http.StatusOK || tp != tpA || ts != "vendor=x" {
		t.Errorf("a valid traceparent reached app B as %q / %q, want %q / vendor=x unchanged", tp, ts, tpA)
	}

	const bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
	resp = a.Do(t, http.MethodPost, "/v1.0/invoke/appb/method/hello", "ping", "traceparent", bad, "tracestate", "vendor=x")
	tp, ts, _ = app.last()
	if resp.Status != http.StatusOK || tp == bad || parse(t, tp).TraceID().String() == traceA || ts != "" {
		t.Errorf("malformed traceparent reached app B as %q / %q, want a new trace without the tracestate", tp, ts)
	}

	// The gRPC API does the same.
	grpcInvoke := func(md metadata.MD) string {
		t.Helper()
		ctx := metadata.NewOutgoingContext(context.Background(), md)
		_, err := a.Dapr.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "appb", Message: &commonv1.InvokeRequest{
			Method: "hello", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST},
		}})
		if err != nil {
			t.Fatalf("gRPC invoke: %v", err)
		}
		tp, _, _ := app.last()
		return tp
	}
	if tp := grpcInvoke(metadata.MD{}); parse(t, tp).IsSampled() {
		t.Errorf("gRPC without a trace: app B got %q", tp)
	}
	if tp := grpcInvoke(metadata.MD{"traceparent": {tpA}}); tp != tpA {
		t.Errorf("gRPC with a valid traceparent: app B got %q, want %q", tp, tpA)
	}
	if tp := grpcInvoke(metadata.MD{"traceparent": {bad}}); tp == bad || parse(t, tp).TraceID().String() == traceA {
		t.Errorf("gRPC with a malformed traceparent: app B got %q", tp)
	}
}
