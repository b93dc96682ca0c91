package guard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/blocks/configuration/cfgstores"
	"github.com/mecha-dev/mecha/internal/mechatest"
	mrt "github.com/mecha-dev/mecha/internal/runtime"
)

// Tokens of the two sidecars of TestAPIToken and of their apps.
const (
	tokA    = "s3cret-A"
	appTokA = "app-token-A"
	tokB    = "s3cret-B"
	appTokB = "app-token-B"
	idA     = "guard-http"
	idB     = "guard-grpc"
)

// seenTokens records the dapr-api-token values an app received, per call
// kind ("/orders", "OnTopicEvent", ...), each call's values joined by ",".
type seenTokens struct {
	mu   sync.Mutex
	seen map[string][]string
}

func newSeen() *seenTokens { return &seenTokens{seen: map[string][]string{}} }

func (s *seenTokens) add(where string, vals []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen[where] = append(s.seen[where], strings.Join(vals, ","))
}

// expect waits until the app received a call of kind where and checks
// that every such call carried exactly want.
func (s *seenTokens) expect(t *testing.T, where, want string) {
	t.Helper()
	mechatest.Eventually(t, 15*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		got := s.seen[where]
		if len(got) == 0 {
			return fmt.Errorf("the app received no %s call", where)
		}
		for _, v := range got {
			if v != want {
				return fmt.Errorf("the app's %s calls carried dapr-api-token %q, want exactly %q", where, got, want)
			}
		}
		return nil
	})
}

// httpApp is sidecar A's app: it subscribes to "orders", answers
// invocations, health probes and cron events, and records tokens.
func httpApp(seen *seenTokens) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		where := r.URL.Path
		if r.Method == http.MethodOptions {
			where = "OPTIONS " + where
		}
		seen.add(where, r.Header.Values("Dapr-Api-Token"))
		switch r.URL.Path {
		case "/dapr/subscribe":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `[{"pubsubname":"pubsub","topic":"orders","route":"/orders"}]`)
		case "/echo":
			_, _ = io.WriteString(w, "echo")
		default:
			_, _ = io.Copy(io.Discard, r.Body)
		}
	})
}

// grpcApp is sidecar B's app: AppCallback, AppCallbackHealthCheck and
// grpc.testing.TestService (for the proxy), recording tokens.
type grpcApp struct {
	runtimev1.UnimplementedAppCallbackServer
	runtimev1.UnimplementedAppCallbackHealthCheckServer
	testpb.UnimplementedTestServiceServer
	seen *seenTokens
}

func (a *grpcApp) record(ctx context.Context, where string) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.seen.add(where, md.Get("dapr-api-token"))
}

func (a *grpcApp) OnInvoke(ctx context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	a.record(ctx, "OnInvoke")
	return &commonv1.InvokeResponse{Data: &anypb.Any{Value: []byte("echo:" + in.GetMethod())}, ContentType: "text/plain"}, nil
}

func (a *grpcApp) ListTopicSubscriptions(ctx context.Context, _ *emptypb.Empty) (*runtimev1.ListTopicSubscriptionsResponse, error) {
	a.record(ctx, "ListTopicSubscriptions")
	return &runtimev1.ListTopicSubscriptionsResponse{Subscriptions: []*runtimev1.TopicSubscription{{PubsubName: "pubsub", Topic: "orders-b"}}}, nil
}

func (a *grpcApp) OnTopicEvent(ctx context.Context, _ *runtimev1.TopicEventRequest) (*runtimev1.TopicEventResponse, error) {
	a.record(ctx, "OnTopicEvent")
	return &runtimev1.TopicEventResponse{Status: runtimev1.TopicEventResponse_SUCCESS}, nil
}

func (a *grpcApp) ListInputBindings(ctx context.Context, _ *emptypb.Empty) (*runtimev1.ListInputBindingsResponse, error) {
	a.record(ctx, "ListInputBindings")
	return &runtimev1.ListInputBindingsResponse{Bindings: []string{"cron"}}, nil
}

func (a *grpcApp) OnBindingEvent(ctx context.Context, _ *runtimev1.BindingEventRequest) (*runtimev1.BindingEventResponse, error) {
	a.record(ctx, "OnBindingEvent")
	return &runtimev1.BindingEventResponse{}, nil
}

func (a *grpcApp) HealthCheck(ctx context.Context, _ *emptypb.Empty) (*runtimev1.HealthCheckResponse, error) {
	a.record(ctx, "HealthCheck")
	return &runtimev1.HealthCheckResponse{}, nil
}

func (a *grpcApp) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	a.record(ctx, "UnaryCall")
	return &testpb.SimpleResponse{Username: "proxied:" + string(in.GetPayload().GetBody())}, nil
}

func (a *grpcApp) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	a.record(stream.Context(), "FullDuplexCall")
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// serveGRPCApp serves app on 127.0.0.1:0 until the test ends.
func serveGRPCApp(t *testing.T, app *grpcApp) int {
	t.Helper()
	gs := grpc.NewServer()
	runtimev1.RegisterAppCallbackServer(gs, app)
	runtimev1.RegisterAppCallbackHealthCheckServer(gs, app)
	testpb.RegisterTestServiceServer(gs, app)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(l)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// pair is the two sidecars of TestAPIToken: A with an HTTP app and every
// building block, B with a gRPC app; each has its own API and app tokens.
type pair struct {
	a, b         *mechatest.Sidecar
	seenA, seenB *seenTokens
	cfg          cfgstores.Writer
}

func startPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{seenA: newSeen(), seenB: newSeen()}
	secrets := filepath.Join(t.TempDir(), "secrets.json")
	if err := os.WriteFile(secrets, []byte(`{"db":"pw","api":"key"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgYAML, cfg := cfgstores.SQLite(t, "config")
	p.cfg = cfg
	health := func(o *mrt.Options) {
		o.AppHealthCheck = true
		o.AppHealthProbeInterval = 200 * time.Millisecond
		o.AppHealthProbeTimeout = 200 * time.Millisecond
	}
	portA := mechatest.HTTPApp(t, httpApp(p.seenA))
	p.a = mechatest.Start(t, func(o *mrt.Options) {
		o.AppID, o.AppPort = idA, portA
		o.APIToken, o.AppAPIToken = tokA, appTokA
		health(o)
	},
		mechatest.Component("statestore", "state.in-memory"),
		mechatest.Component("pubsub", "pubsub.in-memory"),
		mechatest.Component("store", "bindings.localstorage", "rootPath", t.TempDir()),
		mechatest.Component("cron", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("secrets", "secretstores.local.file", "secretsFile", secrets),
		cfgYAML,
		mechatest.Component("lock", "lock.in-memory"),
	)
	// The store creates its table.
	if err := cfg.Set(context.Background(), "a", "1"); err != nil {
		t.Fatal(err)
	}
	portB := serveGRPCApp(t, &grpcApp{seen: p.seenB})
	p.b = mechatest.Start(t, func(o *mrt.Options) {
		o.AppID, o.AppPort, o.AppProtocol = idB, portB, "grpc"
		o.APIToken, o.AppAPIToken = tokB, appTokB
		health(o)
	},
		mechatest.Component("pubsub", "pubsub.in-memory"),
		mechatest.Component("cron", "bindings.cron", "schedule", "@every 1s"),
	)
	return p
}

// tokenCase is how a call presents its token.
type tokenCase struct {
	name  string
	token []string // header values; nil sends none
	// detail is daprd's gRPC error detail ("" when the call must pass).
	detail string
}

func tokenCases(right string) []tokenCase {
	return []tokenCase{
		{"missing", nil, "missing api token in request metadata"},
		{"empty", []string{""}, "authentication error: api token mismatch"},
		{"wrong", []string{"not-" + right}, "authentication error: api token mismatch"},
		{"other sidecar's", []string{map[string]string{tokA: tokB, tokB: tokA}[right]}, "authentication error: api token mismatch"},
		{"right", []string{right}, ""},
	}
}

func (c tokenCase) headers() []string {
	var h []string
	for _, v := range c.token {
		h = append(h, "dapr-api-token", v)
	}
	return h
}

func (c tokenCase) ctx(t *testing.T, kv ...string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, append(c.headers(), kv...)...)
}

// isDaprUnauthenticated checks err is daprd's answer: Unauthenticated,
// message "Unauthorized", ErrorInfo{Reason: Unauthorized, Domain:
// dapr.io, http.code: 401, http.error_message: detail}.
func isDaprUnauthenticated(err error, detail string) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated || st.Message() != "Unauthorized" {
		return fmt.Errorf("got %v, want Unauthenticated \"Unauthorized\"", err)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if ei.GetReason() != "Unauthorized" || ei.GetDomain() != "dapr.io" ||
				ei.GetMetadata()["http.code"] != "401" || ei.GetMetadata()["http.error_message"] != detail {
				return fmt.Errorf("ErrorInfo %v, want reason Unauthorized, domain dapr.io, http.code 401, http.error_message %q", ei, detail)
			}
			return nil
		}
	}
	return fmt.Errorf("%v has no ErrorInfo", err)
}

// TestAPIToken checks DAPR_API_TOKEN on every HTTP route and gRPC method
// of the API (the proxy included), the open health endpoints, and
// APP_API_TOKEN on every kind of call the sidecars make to HTTP and gRPC
// apps.
func TestAPIToken(t *testing.T) {
	p := startPair(t)
	t.Run("health endpoints are open", func(t *testing.T) {
		for _, path := range []string{"/v1.0/healthz", "/v1.0/healthz/outbound"} {
			mechatest.Eventually(t, 15*time.Second, func() error {
				if r := p.a.Do(t, "GET", path, nil); r.Status != http.StatusNoContent {
					return fmt.Errorf("GET %s without a token = %d %s, want 204", path, r.Status, r.Body)
				}
				return nil
			})
		}
		for _, m := range []string{"HEAD", "POST"} {
			if r := p.a.Do(t, m, "/v1.0/healthz", nil); r.Status != http.StatusUnauthorized {
				t.Errorf("%s /v1.0/healthz without a token = %d, want 401 (only GET is open, as in daprd)", m, r.Status)
			}
		}
	})
	t.Run("HTTP", func(t *testing.T) { testHTTPRoutes(t, p) })
	t.Run("gRPC every method", func(t *testing.T) { testEveryGRPCMethod(t, p) })
	t.Run("gRPC", func(t *testing.T) { testGRPCCalls(t, p) })
	t.Run("gRPC proxy", func(t *testing.T) { testProxy(t, p) })
	t.Run("app token HTTP app", func(t *testing.T) {
		for _, where := range []string{"/dapr/subscribe", "/orders", "/echo", "/healthz", "OPTIONS /cron", "/cron"} {
			p.seenA.expect(t, where, appTokA)
		}
	})
	t.Run("app token gRPC app", func(t *testing.T) {
		for _, where := range []string{"ListTopicSubscriptions", "OnTopicEvent", "OnInvoke", "HealthCheck", "ListInputBindings", "OnBindingEvent", "UnaryCall", "FullDuplexCall"} {
			p.seenB.expect(t, where, appTokB)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		select {
		case <-p.a.RT.ShutdownRequested():
		default:
			t.Errorf("shutdown with the right token was not requested")
		}
	})
}

// httpRoute is one call of the HTTP table; status is the answer with the
// right token, check an optional look at its body.
type httpRoute struct {
	method, path string
	body         string
	headers      []string
	status       int
	check        func(body []byte) error
}

func testHTTPRoutes(t *testing.T, p *pair) {
	routes := []httpRoute{
		{method: "POST", path: "/v1.0/state/statestore", body: `[{"key":"k1","value":"v1"}]`, status: 204},
		{method: "PUT", path: "/v1.0/state/statestore", body: `[{"key":"k2","value":"v2"}]`, status: 204},
		{method: "GET", path: "/v1.0/state/statestore/k1", status: 200, check: bodyIs(`"v1"`)},
		{method: "POST", path: "/v1.0/state/statestore/bulk", body: `{"keys":["k1"]}`, status: 200, check: bodyHas(`"v1"`)},
		{method: "PUT", path: "/v1.0/state/statestore/bulk", body: `{"keys":["k2"]}`, status: 200, check: bodyHas(`"v2"`)},
		{method: "POST", path: "/v1.0/state/statestore/transaction", body: `{"operations":[{"operation":"upsert","request":{"key":"k3","value":"v3"}}]}`, status: 204},
		{method: "PUT", path: "/v1.0/state/statestore/transaction", body: `{"operations":[{"operation":"delete","request":{"key":"k3"}}]}`, status: 204},
		{method: "DELETE", path: "/v1.0/state/statestore/k2", status: 204},
		{method: "POST", path: "/v1.0/invoke/" + idA + "/method/echo", body: "x", status: 200, check: bodyIs("echo")},
		{method: "GET", path: "/echo", headers: []string{"dapr-app-id", idA}, status: 200, check: bodyIs("echo")},
		{method: "POST", path: "/v1.0/invoke/" + idB + "/method/hello", body: "x", status: 200, check: bodyIs("echo:hello")},
		{method: "POST", path: "/v1.0/publish/pubsub/orders", body: `{"n":1}`, status: 204},
		{method: "POST", path: "/v1.0/publish/bulk/pubsub/orders", body: `[{"entryId":"1","event":{"n":2},"contentType":"application/json"}]`, status: 204},
		{method: "POST", path: "/v1.0-alpha1/publish/bulk/pubsub/orders", body: `[{"entryId":"1","event":{"n":3},"contentType":"application/json"}]`, status: 204},
		{method: "POST", path: "/v1.0/bindings/store", body: `{"operation":"create","data":"hello","metadata":{"fileName":"f.txt"}}`, status: 200},
		{method: "PUT", path: "/v1.0/bindings/store", body: `{"operation":"get","metadata":{"fileName":"f.txt"}}`, status: 200, check: bodyIs("hello")},
		{method: "GET", path: "/v1.0/secrets/secrets/db", status: 200, check: bodyIs(`{"db":"pw"}`)},
		{method: "GET", path: "/v1.0/secrets/secrets/bulk", status: 200, check: bodyHas(`"api":{"api":"key"}`)},
		{method: "GET", path: "/v1.0/configuration/config?key=a", status: 200, check: bodyHas(`"value":"1"`)},
		{method: "GET", path: "/v1.0-alpha1/configuration/config?key=a", status: 200, check: bodyHas(`"value":"1"`)},
		{method: "GET", path: "/v1.0/configuration/config/subscribe?key=a", status: 200, check: bodyHas(`"id":`)},
		{method: "GET", path: "/v1.0/configuration/config/no-such-id/unsubscribe", status: 500, check: bodyHas("subscription does not exist")},
		{method: "POST", path: "/v1.0-alpha1/lock/lock", body: `{"resourceId":"r","lockOwner":"o","expiryInSeconds":60}`, status: 200, check: bodyIs(`{"success":true}`)},
		{method: "POST", path: "/v1.0-alpha1/unlock/lock", body: `{"resourceId":"r","lockOwner":"o"}`, status: 200, check: bodyIs(`{"status":0}`)},
		{method: "GET", path: "/v1.0/metadata", status: 200, check: bodyHas(`"id":"` + idA + `"`)},
		{method: "PUT", path: "/v1.0/metadata/k", body: "v", status: 204},
		{method: "POST", path: "/v1.0/shutdown", status: 204},
	}
	for _, rt := range routes {
		for _, tc := range tokenCases(tokA) {
			t.Run(rt.method+" "+rt.path+"/"+tc.name, func(t *testing.T) {
				if rt.path == "/v1.0/shutdown" && tc.detail != "" {
					defer func() {
						select {
						case <-p.a.RT.ShutdownRequested():
							t.Errorf("shutdown requested with token %q", tc.token)
						default:
						}
					}()
				}
				var body any
				if rt.body != "" {
					body = rt.body
				}
				r := p.a.Do(t, rt.method, rt.path, body, append(tc.headers(), rt.headers...)...)
				if tc.detail != "" {
					if r.Status != http.StatusUnauthorized || string(r.Body) != "invalid api token\n" {
						t.Fatalf("= %d %q, want daprd's 401 \"invalid api token\"", r.Status, r.Body)
					}
					return
				}
				if r.Status != rt.status {
					t.Fatalf("= %d %s, want %d", r.Status, r.Body, rt.status)
				}
				if rt.check != nil {
					if err := rt.check(r.Body); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

func bodyIs(want string) func([]byte) error {
	return func(b []byte) error {
		if string(b) != want {
			return fmt.Errorf("body %s, want %s", b, want)
		}
		return nil
	}
}

func bodyHas(want string) func([]byte) error {
	return func(b []byte) error {
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("body %s, want it to contain %s", b, want)
		}
		return nil
	}
}

// rawCall calls full on conn with an empty message, as a unary call or
// as a stream that sends one message and reads one.
func rawCall(ctx context.Context, conn *grpc.ClientConn, full string, stream bool) error {
	if !stream {
		return conn.Invoke(ctx, full, &emptypb.Empty{}, &emptypb.Empty{})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, full)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	if err := cs.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// testEveryGRPCMethod calls every method of the Dapr service, served or
// not, with empty requests: without the right token each must fail with
// daprd's Unauthenticated before any handler runs; with it, none may.
func testEveryGRPCMethod(t *testing.T, p *pair) {
	desc := runtimev1.Dapr_ServiceDesc
	type method struct {
		name   string
		stream bool
	}
	var methods []method
	for _, m := range desc.Methods {
		methods = append(methods, method{m.MethodName, false})
	}
	for _, s := range desc.Streams {
		methods = append(methods, method{s.StreamName, true})
	}
	if len(methods) < 40 {
		t.Fatalf("only %d methods in %s", len(methods), desc.ServiceName)
	}
	for _, right := range []bool{false, true} {
		for _, tc := range tokenCases(tokA) {
			if (tc.detail == "") != right {
				continue
			}
			for _, m := range methods {
				if right && m.name == "Shutdown" {
					continue // the HTTP table's last call requests it
				}
				full := "/" + desc.ServiceName + "/" + m.name
				ctx, cancel := context.WithTimeout(tc.ctx(t), 5*time.Second)
				err := rawCall(ctx, p.a.Conn, full, m.stream)
				cancel()
				if right {
					if status.Code(err) == codes.Unauthenticated {
						t.Errorf("%s with the right token: %v", m.name, err)
					}
					continue
				}
				if e := isDaprUnauthenticated(err, tc.detail); e != nil {
					t.Errorf("%s with %s token: %v", m.name, tc.name, e)
				}
			}
		}
	}
}

// grpcCall is one call of the gRPC table; it returns the first error.
type grpcCall struct {
	name string
	call func(ctx context.Context, c runtimev1.DaprClient) error
}

func testGRPCCalls(t *testing.T, p *pair) {
	cfgID := ""
	calls := []grpcCall{
		{"SaveState", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "g1", Value: []byte("v1")}, {Key: "g2", Value: []byte("v2")}}})
			return err
		}},
		{"GetState", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "g1"})
			return want(err, string(r.GetData()), "v1")
		}},
		{"GetBulkState", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetBulkState(ctx, &runtimev1.GetBulkStateRequest{StoreName: "statestore", Keys: []string{"g2"}})
			if err != nil {
				return err
			}
			return want(nil, string(r.GetItems()[0].GetData()), "v2")
		}},
		{"ExecuteStateTransaction", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: []*runtimev1.TransactionalStateOperation{
				{OperationType: "upsert", Request: &commonv1.StateItem{Key: "g3", Value: []byte("v3")}},
			}})
			return err
		}},
		{"DeleteState", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.DeleteState(ctx, &runtimev1.DeleteStateRequest{StoreName: "statestore", Key: "g3"})
			return err
		}},
		{"DeleteBulkState", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "g2"}}})
			return err
		}},
		{"InvokeService HTTP app", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: idA, Message: &commonv1.InvokeRequest{Method: "echo", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST}}})
			return want(err, string(r.GetData().GetValue()), "echo")
		}},
		{"InvokeService gRPC app", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: idB, Message: &commonv1.InvokeRequest{Method: "hi"}})
			return want(err, string(r.GetData().GetValue()), "echo:hi")
		}},
		{"PublishEvent", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.PublishEvent(ctx, &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "orders", Data: []byte(`{"n":4}`), DataContentType: "application/json"})
			return err
		}},
		{"BulkPublishEvent", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.BulkPublishEvent(ctx, &runtimev1.BulkPublishRequest{PubsubName: "pubsub", Topic: "orders", Entries: []*runtimev1.BulkPublishRequestEntry{{EntryId: "1", Event: []byte(`{"n":5}`), ContentType: "application/json"}}})
			return want(err, fmt.Sprint(len(r.GetFailedEntries())), "0")
		}},
		{"InvokeBinding", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "store", Operation: "create", Data: []byte("g"), Metadata: map[string]string{"fileName": "g.txt"}})
			return err
		}},
		{"GetSecret", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "secrets", Key: "db"})
			return want(err, r.GetData()["db"], "pw")
		}},
		{"GetBulkSecret", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetBulkSecret(ctx, &runtimev1.GetBulkSecretRequest{StoreName: "secrets"})
			return want(err, r.GetData()["api"].GetSecrets()["api"], "key")
		}},
		{"GetConfiguration", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetConfiguration(ctx, &runtimev1.GetConfigurationRequest{StoreName: "config", Keys: []string{"a"}})
			return want(err, r.GetItems()["a"].GetValue(), "1")
		}},
		{"SubscribeConfiguration", func(ctx context.Context, c runtimev1.DaprClient) error {
			s, err := c.SubscribeConfiguration(ctx, &runtimev1.SubscribeConfigurationRequest{StoreName: "config", Keys: []string{"a"}})
			if err != nil {
				return err
			}
			r, err := s.Recv()
			if err == nil && r.GetId() == "" {
				return errors.New("no subscription id")
			}
			cfgID = r.GetId()
			return err
		}},
		{"UnsubscribeConfiguration", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.UnsubscribeConfiguration(ctx, &runtimev1.UnsubscribeConfigurationRequest{StoreName: "config", Id: cfgID})
			return want(err, fmt.Sprint(r.GetOk()), "true")
		}},
		{"TryLockAlpha1", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.TryLockAlpha1(ctx, &runtimev1.TryLockRequest{StoreName: "lock", ResourceId: "g", LockOwner: "o", ExpiryInSeconds: 60})
			return want(err, fmt.Sprint(r.GetSuccess()), "true")
		}},
		{"UnlockAlpha1", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.UnlockAlpha1(ctx, &runtimev1.UnlockRequest{StoreName: "lock", ResourceId: "g", LockOwner: "o"})
			return want(err, r.GetStatus().String(), "SUCCESS")
		}},
		{"GetMetadata", func(ctx context.Context, c runtimev1.DaprClient) error {
			r, err := c.GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
			return want(err, r.GetId(), idA)
		}},
		{"SetMetadata", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.SetMetadata(ctx, &runtimev1.SetMetadataRequest{Key: "g", Value: "v"})
			return err
		}},
		{"SubscribeTopicEventsAlpha1", func(ctx context.Context, c runtimev1.DaprClient) error {
			s, err := c.SubscribeTopicEventsAlpha1(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&runtimev1.SubscribeTopicEventsRequestAlpha1{SubscribeTopicEventsRequestType: &runtimev1.SubscribeTopicEventsRequestAlpha1_InitialRequest{
				InitialRequest: &runtimev1.SubscribeTopicEventsRequestInitialAlpha1{PubsubName: "pubsub", Topic: "streamed"},
			}}); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			r, err := s.Recv()
			if err == nil && r.GetInitialResponse() == nil {
				return errors.New("no initial response")
			}
			return err
		}},
		{"Shutdown", func(ctx context.Context, c runtimev1.DaprClient) error {
			_, err := c.Shutdown(ctx, &runtimev1.ShutdownRequest{})
			return err
		}},
	}
	parent := t // streams (SubscribeConfiguration) must outlive their subtest
	for _, gc := range calls {
		for _, tc := range tokenCases(tokA) {
			t.Run(gc.name+"/"+tc.name, func(t *testing.T) {
				err := gc.call(tc.ctx(parent), p.a.Dapr)
				if tc.detail == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if e := isDaprUnauthenticated(err, tc.detail); e != nil {
					t.Fatal(e)
				}
			})
		}
	}
	// Sidecar B's API takes its own token, and only it: the gRPC app is
	// reached and gets B's app token.
	for _, tc := range tokenCases(tokB) {
		err := func() error {
			_, err := p.b.Dapr.PublishEvent(tc.ctx(t), &runtimev1.PublishEventRequest{PubsubName: "pubsub", Topic: "orders-b", Data: []byte(`{"n":1}`), DataContentType: "application/json"})
			return err
		}()
		if tc.detail == "" {
			if err != nil {
				t.Errorf("B PublishEvent with B's token: %v", err)
			}
		} else if e := isDaprUnauthenticated(err, tc.detail); e != nil {
			t.Errorf("B PublishEvent with %s token: %v", tc.name, e)
		}
	}
}

func want(err error, got, want string) error {
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("got %q, want %q", got, want)
	}
	return nil
}

// testProxy calls the gRPC app's own service through the proxy: from
// sidecar A to B's app (A checks A's token; B's internal server takes the
// forwarded call without one), and through B to its own app.
func testProxy(t *testing.T, p *pair) {
	for _, via := range []struct {
		name  string
		s     *mechatest.Sidecar
		token string
	}{{"A to B", p.a, tokA}, {"B to its app", p.b, tokB}} {
		client := testpb.NewTestServiceClient(via.s.Conn)
		for _, tc := range tokenCases(via.token) {
			t.Run(via.name+"/"+tc.name, func(t *testing.T) {
				r, err := client.UnaryCall(tc.ctx(t, "dapr-app-id", idB), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("x")}})
				if tc.detail != "" {
					if e := isDaprUnauthenticated(err, tc.detail); e != nil {
						t.Fatalf("UnaryCall: %v", e)
					}
				} else if err != nil || r.GetUsername() != "proxied:x" {
					t.Fatalf("UnaryCall = %v, %v", r, err)
				}
				stream, err := client.FullDuplexCall(tc.ctx(t, "dapr-app-id", idB))
				if err == nil {
					err = stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("y")}})
					if errors.Is(err, io.EOF) {
						err = nil
					}
				}
				var got *testpb.StreamingOutputCallResponse
				if err == nil {
					got, err = stream.Recv()
				}
				if tc.detail != "" {
					if e := isDaprUnauthenticated(err, tc.detail); e != nil {
						t.Fatalf("FullDuplexCall: %v", e)
					}
					return
				}
				if err != nil || string(got.GetPayload().GetBody()) != "y" {
					t.Fatalf("FullDuplexCall = %v, %v", got, err)
				}
				_ = stream.CloseSend()
			})
		}
	}
	// The app never sees the callers' API tokens.
	p.seenB.mu.Lock()
	defer p.seenB.mu.Unlock()
	for where, vals := range p.seenB.seen {
		for _, v := range vals {
			if slices.Contains(strings.Split(v, ","), tokA) || slices.Contains(strings.Split(v, ","), tokB) {
				t.Errorf("the gRPC app's %s call carried a caller's API token: %q", where, v)
			}
		}
	}
}
