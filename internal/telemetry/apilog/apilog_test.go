package apilog_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/metadata"

	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/syncbuf"
	"github.com/mecha-dev/mecha/internal/version"
)

// Values that must never reach a log line.
const (
	apiToken    = "tok-7f3a9c-never-log-me"
	secretValue = "s3cr3t-value-never-log-me"
	stateValue  = "state-value-never-log-me"
)

// TestAPILogs runs a sidecar with --log-as-json's logger and
// --enable-api-logging, calls its HTTP and gRPC APIs (state, secrets) with
// a dapr-api-token, and checks the log: one "request" line per call with
// method, path or gRPC method, status code and duration, Dapr's fields on
// every line, and no token, secret value or state value anywhere.
func TestAPILogs(t *testing.T) {
	t.Setenv("MECHA_APILOG_SECRET", secretValue)
	var out syncbuf.Buffer
	logger, err := logging.New(logging.Options{Level: "debug", JSON: true, Scope: "mecha.runtime", Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	s := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = "logged"
		o.Logger = logger
		o.EnableAPILogging = true
	}, mechatest.InMemory, mechatest.Component("envstore", "secretstores.local.env", "prefix", "MECHA_APILOG_"))

	tok := []string{"dapr-api-token", apiToken}
	if r := s.Do(t, "POST", "/v1.0/state/statestore", `[{"key":"k1","value":"`+stateValue+`"}]`, tok...); r.Status != http.StatusNoContent {
		t.Fatalf("save: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "GET", "/v1.0/state/statestore/k1", nil, tok...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), stateValue) {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, "GET", "/v1.0/secrets/envstore/SECRET", nil, tok...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), secretValue) {
		t.Fatalf("secret: %d %s", r.Status, r.Body)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), tok...)
	if _, err := s.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k2", Value: []byte(stateValue)}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Dapr.GetSecret(ctx, &runtimev1.GetSecretRequest{StoreName: "envstore", Key: "SECRET"}); err != nil || res.GetData()["SECRET"] != secretValue {
		t.Fatalf("GetSecret = %v, %v", res, err)
	}
	if _, err := s.Dapr.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "nostore", Key: "k3"}); err == nil {
		t.Fatal("GetState on an unknown store succeeded")
	}
	if err := s.RT.Close(context.Background()); err != nil { // flush: every call is logged by now
		t.Fatal(err)
	}

	logs := out.String()
	for _, secret := range []string{apiToken, secretValue, stateValue} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain %q:\n%s", secret, logs)
		}
	}
	host, _ := os.Hostname()
	var requests []map[string]any
	for line := range strings.Lines(logs) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		for k, want := range map[string]any{"app_id": "logged", "instance": host, "ver": version.Version} {
			if m[k] != want {
				t.Errorf("%s = %v, want %v in %s", k, m[k], want, line)
			}
		}
		for _, k := range []string{"time", "level", "msg", "scope", "type"} {
			if _, ok := m[k]; !ok {
				t.Errorf("no %s in %s", k, line)
			}
		}
		if m["type"] == logging.TypeRequest {
			requests = append(requests, m)
		} else if m["type"] != logging.TypeLog {
			t.Errorf("type = %v in %s", m["type"], line)
		}
	}
	want := []call{
		{"HTTP API called", "POST", "/v1.0/state/statestore", float64(204)},
		{"HTTP API called", "GET", "/v1.0/state/statestore/k1", float64(200)},
		{"HTTP API called", "GET", "/v1.0/secrets/envstore/SECRET", float64(200)},
		{"gRPC API called", "/dapr.proto.runtime.v1.Dapr/SaveState", "", "OK"},
		{"gRPC API called", "/dapr.proto.runtime.v1.Dapr/GetSecret", "", "OK"},
		{"gRPC API called", "/dapr.proto.runtime.v1.Dapr/GetState", "", "InvalidArgument"},
	}
	if len(requests) != len(want) {
		t.Fatalf("%d request lines, want %d:\n%s", len(requests), len(want), logs)
	}
	// A gRPC call's line can come after the client got its answer and
	// made the next call: compare in a fixed order.
	got := make([]call, len(requests))
	for i, m := range requests {
		got[i] = call{msg: m["msg"].(string), method: m["method"].(string), status: m["status"]}
		got[i].path, _ = m["path"].(string)
	}
	sort.Sort(byCall{got, requests})
	sort.Sort(byCall{want, nil})
	for i, w := range want {
		m := requests[i]
		if got[i] != w {
			t.Errorf("request line %d = %+v, want %+v", i, got[i], w)
		}
		if d, ok := m["duration"].(float64); !ok || d <= 0 {
			t.Errorf("request line %d has no positive duration: %v", i, m)
		}
		if m["level"] != "info" {
			t.Errorf("request line %d level = %v, want info", i, m["level"])
		}
		if strings.HasPrefix(w.msg, "gRPC") {
			wantCode := map[string]float64{"OK": 0, "InvalidArgument": 3}[w.status.(string)]
			if m["code"] != wantCode {
				t.Errorf("request line %d code = %v, want %v", i, m["code"], wantCode)
			}
		}
	}
}

// TestAPILogsOff: without --enable-api-logging no request is logged.
func TestAPILogsOff(t *testing.T) {
	var out syncbuf.Buffer
	logger, err := logging.New(logging.Options{Level: "debug", JSON: true, Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	s := mechatest.Start(t, func(o *runtime.Options) { o.Logger = logger }, mechatest.InMemory)
	s.Do(t, "GET", "/v1.0/state/statestore/k", nil)
	if _, err := s.Dapr.GetState(context.Background(), &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RT.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), `"type":"request"`) {
		t.Fatalf("API calls logged with API logging off:\n%s", out.String())
	}
}

type call struct {
	msg, method, path string
	status            any
}

// byCall sorts calls, and the log lines beside them when given.
type byCall struct {
	c []call
	m []map[string]any
}

func (b byCall) Len() int { return len(b.c) }
func (b byCall) Less(i, j int) bool {
	return b.c[i].msg+b.c[i].method+b.c[i].path < b.c[j].msg+b.c[j].method+b.c[j].path
}

func (b byCall) Swap(i, j int) {
	b.c[i], b.c[j] = b.c[j], b.c[i]
	if b.m != nil {
		b.m[i], b.m[j] = b.m[j], b.m[i]
	}
}
