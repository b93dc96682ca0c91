package bindings

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	cbindings "github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/channel"
)

// fakeOutput records its calls and answers with resp and err.
type fakeOutput struct {
	resp *cbindings.InvokeResponse
	err  error

	mu    sync.Mutex
	calls []*cbindings.InvokeRequest
}

func (f *fakeOutput) Init(context.Context, components.Metadata) error { return nil }
func (f *fakeOutput) Operations() []cbindings.Operation {
	return []cbindings.Operation{"create", "get"}
}
func (f *fakeOutput) Close() error { return nil }
func (f *fakeOutput) Invoke(_ context.Context, r *cbindings.InvokeRequest) (*cbindings.InvokeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r)
	return f.resp, f.err
}

func TestInvoke(t *testing.T) {
	failing := &fakeOutput{resp: &cbindings.InvokeResponse{Metadata: map[string]string{"statusCode": "500"}}, err: errors.New("upstream broke")}
	ok := &fakeOutput{resp: &cbindings.InvokeResponse{Data: []byte("d")}}
	b := New(nil, nil)
	for name, o := range map[string]cbindings.Output{"ok": ok, "failing": failing} {
		if err := b.AddOutput(name, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddOutput("ok", ok); err == nil {
		t.Fatal("adding a duplicate name succeeded")
	}
	tests := []struct {
		name    string
		req     InvokeRequest
		wantMsg string // "" = success
		wantMD  string // statusCode in the response returned with the error
	}{
		{name: "success", req: InvokeRequest{Name: "ok", Operation: "get"}},
		{name: "missing operation", req: InvokeRequest{Name: "ok"}, wantMsg: "error invoking output binding ok: operation field is missing from request"},
		{name: "unknown", req: InvokeRequest{Name: "nope", Operation: "get"}, wantMsg: "error invoking output binding nope: couldn't find output binding nope"},
		{name: "unsupported", req: InvokeRequest{Name: "ok", Operation: "delete"}, wantMsg: "error invoking output binding ok: binding ok does not support operation delete. supported operations:create get"},
		{name: "component error keeps the response", req: InvokeRequest{Name: "failing", Operation: "create"}, wantMsg: "error invoking output binding failing: upstream broke", wantMD: "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := b.Invoke(context.Background(), tt.req)
			if tt.wantMsg == "" {
				if err != nil || string(resp.Data) != "d" {
					t.Fatalf("Invoke = %v, %v", resp, err)
				}
				return
			}
			ae := apierr.From(err)
			if ae.Kind != apierr.InvokeOutputBinding || ae.Message != tt.wantMsg {
				t.Fatalf("error = %v (kind %s), want ERR_INVOKE_OUTPUT_BINDING %q", err, ae.Kind.Code, tt.wantMsg)
			}
			if got := ""; resp != nil {
				got = resp.Metadata["statusCode"]
				if got != tt.wantMD {
					t.Fatalf("response metadata statusCode = %q, want %q", got, tt.wantMD)
				}
			} else if tt.wantMD != "" {
				t.Fatalf("no response with the error, want one with statusCode %s", tt.wantMD)
			}
		})
	}
	if md := ok.calls[0].Metadata; md == nil {
		t.Error("a request without metadata reached the component with nil metadata")
	}
}

func TestParseAppResponse(t *testing.T) {
	tests := []struct {
		body   string
		wantOK bool
		wantTo int
	}{
		{`{"to":["a","b"],"data":1}`, true, 2},
		{`  {"storeName":"s","state":[{"key":"k","value":1}]}`, true, 0},
		{`{"data":1}`, false, 0},
		{`"to"`, false, 0},
		{`[{"to":["a"]}]`, false, 0},
		{`{"to":"not a list"}`, false, 0},
		{``, false, 0},
		{`plain text`, false, 0},
	}
	for _, tt := range tests {
		r, ok := parseAppResponse([]byte(tt.body))
		if ok != tt.wantOK || len(r.To) != tt.wantTo {
			t.Errorf("parseAppResponse(%q) = %+v, %v; want ok %v with %d targets", tt.body, r, ok, tt.wantOK, tt.wantTo)
		}
	}
}

// blockingInput reads until ctx ends (or, when ignoreCtx, until Close).
type blockingInput struct {
	ignoreCtx bool
	started   chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	reads     atomic.Int32
	returned  atomic.Bool
}

func newBlockingInput(ignoreCtx bool) *blockingInput {
	return &blockingInput{ignoreCtx: ignoreCtx, started: make(chan struct{}), closed: make(chan struct{})}
}

func (f *blockingInput) Init(context.Context, components.Metadata) error { return nil }
func (f *blockingInput) Read(ctx context.Context, _ cbindings.Handler) error {
	f.reads.Add(1)
	close(f.started)
	defer f.returned.Store(true)
	if f.ignoreCtx {
		<-f.closed
		return nil
	}
	select {
	case <-ctx.Done():
	case <-f.closed:
	}
	return nil
}
func (f *blockingInput) Close() error { f.closeOnce.Do(func() { close(f.closed) }); return nil }

func readyApp(t *testing.T) *channel.App {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	ready := make(chan struct{})
	close(ready)
	app, err := channel.New(channel.Options{Port: port}, ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

func TestCloseStopsInputs(t *testing.T) {
	for _, ignoreCtx := range []bool{false, true} {
		t.Run("ignoreCtx="+strconv.FormatBool(ignoreCtx), func(t *testing.T) {
			b := New(readyApp(t), nil)
			in := newBlockingInput(ignoreCtx)
			if err := b.AddInput("in", in, components.Metadata{Properties: map[string]string{"direction": "input"}}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.Start(ctx)
			select {
			case <-in.started:
			case <-time.After(10 * time.Second):
				t.Fatal("Read was not called")
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if !in.returned.Load() {
				t.Fatal("Close returned while Read was still running")
			}
			if err := b.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestInputsNeedAnApp(t *testing.T) {
	b := New(nil, nil)
	in := newBlockingInput(false)
	if err := b.AddInput("in", in, components.Metadata{}); err != nil {
		t.Fatal(err)
	}
	b.Start(context.Background())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := in.reads.Load(); n != 0 {
		t.Fatalf("Read called %d times without an app", n)
	}
	if err := b.AddInput("late", newBlockingInput(false), components.Metadata{}); err == nil {
		t.Fatal("AddInput after Start succeeded")
	}
}
