package metrics_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// checkFamily asserts that the count and latency families of a component
// kind have daprd's help texts, hold exactly the series of want (each
// count equal to its latency histogram's sample count) and use the
// sidecar's latency buckets.
func checkFamily(t *testing.T, f families, kind, countHelp, latencyHelp string, want []expect) {
	t.Helper()
	count, latency := "dapr_component_"+kind+"_count", "dapr_component_"+kind+"_latencies"
	var cases []expect
	for _, w := range want {
		cases = append(cases, expect{count, w.labels, w.want}, expect{latency, w.labels, w.want})
	}
	f.Check(t, expects(cases))
	for name, help := range map[string]string{count: countHelp, latency: latencyHelp} {
		fam := f[name]
		if fam == nil {
			t.Errorf("no %s", name)
			continue
		}
		if fam.GetHelp() != help {
			t.Errorf("%s help %q, want daprd's %q", name, fam.GetHelp(), help)
		}
		if n := len(fam.GetMetric()); n != len(want) {
			t.Errorf("%s has %d series, want %d: %s", name, n, len(want), f.Series(name))
		}
	}
	wantBounds := append(slices.Clone(metrics.DefaultLatencyBuckets), math.Inf(1))
	for _, m := range f[latency].GetMetric() {
		var bounds []float64
		for _, b := range m.GetHistogram().GetBucket() {
			bounds = append(bounds, b.GetUpperBound())
		}
		if !slices.Equal(bounds, wantBounds) {
			t.Errorf("%s buckets %v, want daprd's %v", latency, bounds, wantBounds)
		}
	}
}

// TestStateComponentMetrics drives every state operation over HTTP and
// gRPC, successes and ETag failures, and checks that
// dapr_component_state_count and _latencies count each exactly once with
// daprd's operation names; requests that never reach a store (an unknown
// store, an invalid key) create no series.
func TestStateComponentMetrics(t *testing.T) {
	s := mechatest.Start(t, withMetrics, mechatest.InMemory)
	ctx := context.Background()
	do := func(method, path, body string, want int) {
		t.Helper()
		if r := s.Do(t, method, path, body, "Content-Type", "application/json"); r.Status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, want)
		}
	}
	// HTTP: a save of two items is one set; a get; a bulk get; a delete;
	// a transaction; a save with a stale ETag fails.
	do("POST", "/v1.0/state/statestore", `[{"key":"a","value":1},{"key":"b","value":2}]`, http.StatusNoContent)
	do("GET", "/v1.0/state/statestore/a", "", http.StatusOK)
	do("POST", "/v1.0/state/statestore/bulk", `{"keys":["a","b","c"]}`, http.StatusOK)
	do("DELETE", "/v1.0/state/statestore/b", "", http.StatusNoContent)
	do("POST", "/v1.0/state/statestore/transaction", `{"operations":[{"operation":"upsert","request":{"key":"t","value":"v"}},{"operation":"delete","request":{"key":"a"}}]}`, http.StatusNoContent)
	do("POST", "/v1.0/state/statestore", `[{"key":"t","value":"w","etag":"999"}]`, http.StatusConflict)
	// Never reach a store: unknown stores, a malformed key.
	do("GET", "/v1.0/state/nostore/a", "", http.StatusBadRequest)
	do("POST", "/v1.0/state/nostore", `[{"key":"a","value":1}]`, http.StatusBadRequest)
	do("POST", "/v1.0/state/statestore", `[{"key":"x||y","value":1}]`, http.StatusBadRequest)

	// gRPC: the same operations, a bulk delete, and a delete with a stale
	// ETag.
	if _, err := s.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "g1", Value: []byte("1")}, {Key: "g2", Value: []byte("2")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dapr.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "g1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dapr.GetBulkState(ctx, &runtimev1.GetBulkStateRequest{StoreName: "statestore", Keys: []string{"g1", "g2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dapr.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "g1"}, {Key: "g2"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dapr.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: []*runtimev1.TransactionalStateOperation{
		{OperationType: "upsert", Request: &commonv1.StateItem{Key: "g3", Value: []byte("3")}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dapr.DeleteState(ctx, &runtimev1.DeleteStateRequest{StoreName: "statestore", Key: "g3", Etag: &commonv1.Etag{Value: "999"}}); err == nil {
		t.Fatal("DeleteState with a stale ETag succeeded")
	}
	if _, err := s.Dapr.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "nostore", Key: "g1"}); err == nil {
		t.Fatal("GetState on an unknown store succeeded")
	}

	op := func(op, success string) map[string]string {
		return labels("app_id", "myapp", "component", "statestore", "namespace", "default", "operation", op, "success", success)
	}
	f := scrape(t, s)
	checkFamily(t, f, "state", "The number of operations performed on the state component.", "The latency of the response from the state component.", []expect{
		{"", op("set", "true"), 2},
		{"", op("set", "false"), 1},
		{"", op("get", "true"), 2},
		{"", op("bulk_get", "true"), 2},
		{"", op("delete", "true"), 1},
		{"", op("delete", "false"), 1},
		{"", op("bulk_delete", "true"), 1},
		{"", op("transaction", "true"), 2},
	})
}

// bindingsApp answers the cron binding's events: the first is accepted,
// the second refused (500), and so on, counting each answer.
type bindingsApp struct {
	mu               sync.Mutex
	accepted, failed int
}

func (a *bindingsApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/tick" {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodOptions {
		return // 200: the app subscribes
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.accepted > a.failed {
		a.failed++
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	a.accepted++
}

func (a *bindingsApp) counts() (int, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted, a.failed
}

// TestBindingSecretConfigurationMetrics drives output bindings, secrets
// and configuration over HTTP and gRPC, and lets a cron input binding
// deliver to the app, then checks dapr_component_output_binding_*,
// _input_binding_*, _secret_* and _configuration_* exactly; requests
// naming an unknown component or an undeclared binding operation create
// no series.
func TestBindingSecretConfigurationMetrics(t *testing.T) {
	dir := t.TempDir()
	secretsFile := filepath.Join(dir, "secrets.json")
	if err := os.WriteFile(secretsFile, []byte(`{"db":{"user":"admin"},"api":"t0k3n"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	app := &bindingsApp{}
	s := mechatest.Start(t, func(o *runtime.Options) {
		mechatest.App("bapp", mechatest.HTTPApp(t, app), "")(o)
		withMetrics(o)
	},
		mechatest.Component("files", "bindings.localstorage", "rootPath", filepath.Join(dir, "files")),
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"),
		mechatest.Component("vault", "secretstores.local.file", "secretsFile", secretsFile, "multiValued", "true"),
		mechatest.Component("cfg", "configuration.sqlite", "connectionString", filepath.Join(dir, "config.db")),
	)
	ctx := context.Background()
	do := func(method, path, body string, want int) *mechatest.Response {
		t.Helper()
		r := s.Do(t, method, path, body, "Content-Type", "application/json")
		if r.Status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, want)
		}
		return r
	}

	// Output bindings: two creates (HTTP, gRPC), a get of a missing file
	// (the binding fails); an unknown binding and an operation the binding
	// does not declare are refused before any call.
	do("POST", "/v1.0/bindings/files", `{"operation":"create","data":"hello","metadata":{"fileName":"a.txt"}}`, http.StatusOK)
	if _, err := s.Dapr.InvokeBinding(ctx, &runtimev1.InvokeBindingRequest{Name: "files", Operation: "create", Data: []byte(`"x"`), Metadata: map[string]string{"fileName": "b.txt"}}); err != nil {
		t.Fatal(err)
	}
	do("POST", "/v1.0/bindings/files", `{"operation":"get","metadata":{"fileName":"missing.txt"}}`, http.StatusInternalServerError)
	do("POST", "/v1.0/bindings/nobinding", `{"operation":"create","data":"x"}`, http.StatusInternalServerError)
	do("POST", "/v1.0/bindings/files", `{"operation":"made-up-op","data":"x"}`, http.StatusInternalServerError)

	// Secrets: two gets (HTTP, gRPC), one of a missing secret, a bulk get;
	// an unknown store.
	do("GET", "/v1.0/secrets/vault/db", "", http.StatusOK)
	if _, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "vault", Key: "api"}); err != nil {
		t.Fatal(err)
	}
	do("GET", "/v1.0/secrets/vault/nosuchsecret", "", http.StatusInternalServerError)
	do("GET", "/v1.0/secrets/vault/bulk", "", http.StatusOK)
	do("GET", "/v1.0/secrets/nostore/db", "", http.StatusUnauthorized)

	// Configuration: two gets (HTTP, gRPC), a subscribe and its
	// unsubscribe; an unknown store.
	do("GET", "/v1.0/configuration/cfg?key=k", "", http.StatusNoContent)
	if _, err := s.Dapr.GetConfiguration(ctx, &runtimev1.GetConfigurationRequest{StoreName: "cfg", Keys: []string{"k"}}); err != nil {
		t.Fatal(err)
	}
	var sub struct {
		ID string `json:"id"`
	}
	do("GET", "/v1.0/configuration/cfg/subscribe?key=k", "", http.StatusOK).JSON(t, &sub)
	if sub.ID == "" {
		t.Fatal("subscribe returned no id")
	}
	do("GET", "/v1.0/configuration/cfg/"+sub.ID+"/unsubscribe", "", http.StatusOK)
	do("GET", "/v1.0/configuration/nostore?key=k", "", http.StatusBadRequest)

	const ns = "default"
	output := func(op, success string) map[string]string {
		return labels("app_id", "bapp", "component", "files", "namespace", ns, "operation", op, "success", success)
	}
	secret := func(op, success string) map[string]string {
		return labels("app_id", "bapp", "component", "vault", "namespace", ns, "operation", op, "success", success)
	}
	config := func(op string) map[string]string {
		return labels("app_id", "bapp", "component", "cfg", "namespace", ns, "operation", op, "success", "true")
	}
	f := scrape(t, s)
	checkFamily(t, f, "output_binding", "The number of operations invoked on the output binding component.", "The latency of the response from the output binding component.", []expect{
		{"", output("create", "true"), 2},
		{"", output("get", "false"), 1},
	})
	checkFamily(t, f, "secret", "The number of operations performed on the secret component.", "The latency of the response from the secret component.", []expect{
		{"", secret("get", "true"), 2},
		{"", secret("get", "false"), 1},
		{"", secret("bulk_get", "true"), 1},
	})
	checkFamily(t, f, "configuration", "The number of operations performed on the configuration component.", "The latency of the response from the configuration component.", []expect{
		{"", config("get"), 2},
		{"", config("subscribe"), 1},
		{"", config("unsubscribe"), 1},
	})

	if testing.Short() {
		return // the input binding waits for cron ticks
	}
	// Input binding: every event the app answered counts once, by whether
	// it accepted it. Cron fires every second: compare when the app's
	// counts did not move across the scrape.
	input := func(success string) map[string]string {
		return labels("app_id", "bapp", "component", "tick", "namespace", ns, "success", success)
	}
	var want []expect
	mechatest.Eventually(t, 15*time.Second, func() error {
		ok, failed := app.counts()
		if ok < 1 || failed < 1 {
			return fmt.Errorf("the app answered %d events with 200 and %d with 500, want one of each", ok, failed)
		}
		f = scrape(t, s)
		if ok2, failed2 := app.counts(); ok2 != ok || failed2 != failed {
			return fmt.Errorf("a tick arrived during the scrape")
		}
		want = []expect{{"", input("true"), float64(ok)}, {"", input("false"), float64(failed)}}
		var cases []expect
		for _, w := range want {
			cases = append(cases, expect{"dapr_component_input_binding_count", w.labels, w.want}, expect{"dapr_component_input_binding_latencies", w.labels, w.want})
		}
		if m := f.Mismatch(expects(cases)); m != "" {
			return fmt.Errorf("%s", m)
		}
		return nil
	})
	checkFamily(t, f, "input_binding", "The number of incoming events arriving from the input binding component.", "The triggered app event processing latency.", want)
}

// TestComponentOpAllocs: recording a state operation on a series that
// exists allocates nothing (the hot path of every state call), and a nil
// *Metrics records nothing.
func TestComponentOpAllocs(t *testing.T) {
	m := metrics.New(metrics.Options{AppID: "a", Namespace: "ns"})
	m.StateOp("statestore", metrics.OpGet, true, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { m.StateOp("statestore", metrics.OpGet, true, time.Millisecond) }); n != 0 {
		t.Errorf("StateOp allocates %v times per call", n)
	}
	var off *metrics.Metrics
	off.StateOp("statestore", metrics.OpGet, true, time.Millisecond)
	off.OutputBindingOp("b", "create", true, 0)
	off.InputBindingEvent("b", true, 0)
	off.SecretOp("s", metrics.OpGet, true, 0)
	off.ConfigurationOp("c", metrics.OpGet, true, 0)
}
