package configuration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/components"
	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/channel"
)

// fakeStore is a configuration store whose changes the test emits.
type fakeStore struct {
	mu          sync.Mutex
	items       map[string]*cconfig.Item
	getErr      error
	subErr      error
	subs        map[string]cconfig.UpdateHandler
	ctxs        map[string]context.Context
	n           int
	unsubscribe []string
	closed      bool
}

func newFakeStore() *fakeStore {
	return &fakeStore{items: map[string]*cconfig.Item{}, subs: map[string]cconfig.UpdateHandler{}, ctxs: map[string]context.Context{}}
}

func (f *fakeStore) Init(context.Context, components.Metadata) error { return nil }

func (f *fakeStore) Get(_ context.Context, req cconfig.GetRequest) (map[string]*cconfig.Item, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	if len(req.Keys) == 0 {
		return f.items, nil
	}
	out := map[string]*cconfig.Item{}
	for _, k := range req.Keys {
		if it, ok := f.items[k]; ok {
			out[k] = it
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func (f *fakeStore) Subscribe(ctx context.Context, _ cconfig.SubscribeRequest, h cconfig.UpdateHandler) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subErr != nil {
		return "", f.subErr
	}
	f.n++
	id := fmt.Sprintf("sub-%d", f.n)
	f.subs[id], f.ctxs[id] = h, ctx
	return id, nil
}

func (f *fakeStore) Unsubscribe(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsubscribe = append(f.unsubscribe, id)
	if _, ok := f.subs[id]; !ok {
		return cconfig.ErrSubscriptionNotFound
	}
	delete(f.subs, id)
	return nil
}

func (f *fakeStore) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// emit calls subscription id's handler as the store's watcher would.
func (f *fakeStore) emit(id string, items map[string]*cconfig.Item) error {
	f.mu.Lock()
	h, ctx := f.subs[id], f.ctxs[id]
	f.mu.Unlock()
	if h == nil {
		return errors.New("no such subscription")
	}
	return h(ctx, &cconfig.UpdateEvent{ID: id, Items: items})
}

func item(v string) map[string]*cconfig.Item {
	return map[string]*cconfig.Item{"k": {Value: v, Version: v}}
}

// httpApp records requests and answers with handle (200 when nil).
type httpApp struct {
	mu     sync.Mutex
	got    []*http.Request
	bodies [][]byte
	handle func(w http.ResponseWriter, r *http.Request)
	ch     chan struct{}
}

func startHTTPApp(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) (*httpApp, int) {
	a := &httpApp{handle: handle, ch: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.got = append(a.got, r)
		a.bodies = append(a.bodies, b)
		a.mu.Unlock()
		if a.handle != nil {
			a.handle(w, r)
		}
		a.ch <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return a, srv.Listener.Addr().(*net.TCPAddr).Port
}

func (a *httpApp) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-a.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("the app got %d requests, want %d", len(a.got), n)
		}
	}
}

func newApp(t *testing.T, port int, protocol string, ready chan struct{}) *channel.App {
	t.Helper()
	app, err := channel.New(channel.Options{Port: port, Protocol: protocol}, ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

func newBlock(t *testing.T, app *channel.App, stores ...string) (*Block, *fakeStore) {
	t.Helper()
	b := New(app, slog.New(slog.DiscardHandler))
	f := newFakeStore()
	for _, name := range stores {
		if err := b.Add(name, f); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { b.Close() })
	return b, f
}

func wantKind(t *testing.T, err error, k apierr.Kind) *apierr.Error {
	t.Helper()
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Kind != k {
		t.Fatalf("error %v, want kind %s", err, k.Code)
	}
	return ae
}

func TestGet(t *testing.T) {
	b, f := newBlock(t, nil, "cfg")
	f.items["a"] = &cconfig.Item{Value: "1", Version: "v1"}
	ctx := context.Background()
	items, err := b.Get(ctx, GetRequest{Store: "cfg", Keys: []string{"a", "missing"}})
	if err != nil || len(items) != 1 || items["a"].Value != "1" {
		t.Fatalf("Get = %v, %v", items, err)
	}
	items, err = b.Get(ctx, GetRequest{Store: "cfg", Keys: []string{"missing"}})
	if err != nil || items == nil || len(items) != 0 {
		t.Fatalf("Get(missing) = %#v, %v; want an empty map", items, err)
	}
	f.getErr = errors.New("boom")
	_, err = b.Get(ctx, GetRequest{Store: "cfg", Keys: []string{"a", "b"}})
	if ae := wantKind(t, err, apierr.ConfigurationGet); ae.Message != "failed to get [a b] from Configuration store cfg: boom" {
		t.Fatalf("message %q", ae.Message)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	f.getErr = cctx.Err()
	_, err = b.Get(cctx, GetRequest{Store: "cfg"})
	wantKind(t, err, apierr.Canceled)
}

func TestStoreResolution(t *testing.T) {
	empty, _ := newBlock(t, nil)
	one, _ := newBlock(t, nil, "cfg")
	ctx := context.Background()
	_, err := empty.Get(ctx, GetRequest{Store: "cfg"})
	wantKind(t, err, apierr.ConfigurationStoreNotConfigured)
	_, err = empty.SubscribeStream(ctx, SubscribeRequest{Store: "cfg"})
	wantKind(t, err, apierr.ConfigurationStoreNotConfigured)
	err = empty.Unsubscribe(ctx, "cfg", "x")
	wantKind(t, err, apierr.ConfigurationStoreNotConfigured)
	_, err = one.Get(ctx, GetRequest{Store: "other"})
	if ae := wantKind(t, err, apierr.ConfigurationStoreNotFound); ae.Message != "configuration store other not found" {
		t.Fatalf("message %q", ae.Message)
	}
	_, err = one.SubscribeApp(ctx, SubscribeRequest{Store: "other"})
	wantKind(t, err, apierr.ConfigurationStoreNotFound)
	// The store is resolved before the app channel is checked, as in daprd.
	_, err = one.SubscribeApp(ctx, SubscribeRequest{Store: "cfg"})
	wantKind(t, err, apierr.ConfigurationAppChannelNil)
}

func TestSubscribeFails(t *testing.T) {
	b, f := newBlock(t, nil, "cfg")
	f.subErr = errors.New("no notifications")
	_, err := b.SubscribeStream(context.Background(), SubscribeRequest{Store: "cfg", Keys: []string{"a"}})
	if ae := wantKind(t, err, apierr.ConfigurationSubscribe); ae.Message != "failed to subscribe [a] from Configuration store cfg: no notifications" {
		t.Fatalf("message %q", ae.Message)
	}
	if b.Subscriptions() != 0 {
		t.Fatal("a failed subscription is listed")
	}
}

// TestHTTPDelivery checks updates wait for the app, arrive in order, one
// POST per key with the whole update as body, and stop on Unsubscribe.
func TestHTTPDelivery(t *testing.T) {
	app, port := startHTTPApp(t, nil)
	ready := make(chan struct{})
	b, f := newBlock(t, newApp(t, port, "http", ready), "cfg")
	id, err := b.SubscribeApp(context.Background(), SubscribeRequest{Store: "cfg", Keys: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2", "3"} {
		if err := f.emit(id, item(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.emit(id, map[string]*cconfig.Item{"x": {Value: "X"}, "y": nil}); err != nil {
		t.Fatal(err)
	}
	app.mu.Lock()
	early := len(app.got)
	app.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d deliveries before the app was ready", early)
	}
	close(ready)
	app.wait(t, 5)
	app.mu.Lock()
	for i, v := range []string{"1", "2", "3"} {
		r, body := app.got[i], app.bodies[i]
		if r.Method != http.MethodPost || r.URL.Path != "/configuration/cfg/k" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("delivery %d: %s %s %s", i, r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		if want := `{"id":"` + id + `","items":{"k":{"value":"` + v + `","version":"` + v + `"}}}`; string(body) != want {
			t.Errorf("delivery %d body %s, want %s", i, body, want)
		}
	}
	// Two keys: two POSTs, each with the whole update; nil items are empty.
	want := `{"id":"` + id + `","items":{"x":{"value":"X"},"y":{}}}`
	if app.got[3].URL.Path != "/configuration/cfg/x" || app.got[4].URL.Path != "/configuration/cfg/y" || string(app.bodies[3]) != want || string(app.bodies[4]) != want {
		t.Errorf("multi-key deliveries: %s %s / %s %s", app.got[3].URL.Path, app.bodies[3], app.got[4].URL.Path, app.bodies[4])
	}
	app.mu.Unlock()

	if err := b.Unsubscribe(context.Background(), "cfg", id); err != nil {
		t.Fatal(err)
	}
	if err := f.emit(id, item("late")); err == nil {
		t.Fatal("the store still had the subscription after Unsubscribe")
	}
	err = b.Unsubscribe(context.Background(), "cfg", id)
	if ae := wantKind(t, err, apierr.ConfigurationUnsubscribe); ae.Message != "failed to unsubscribe to configuration request "+id+": subscription does not exist" {
		t.Fatalf("message %q", ae.Message)
	}
}

// TestUnsubscribeAbandonsSlowApp checks a subscription stops promptly while
// the app hangs on a delivery, and that a store blocked on a full queue is
// released.
func TestUnsubscribeAbandonsSlowApp(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	_, port := startHTTPApp(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ready := make(chan struct{})
	close(ready)
	b, f := newBlock(t, newApp(t, port, "http", ready), "cfg")
	id, err := b.SubscribeApp(context.Background(), SubscribeRequest{Store: "cfg"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emit(id, item("stuck")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-arrived: // the delivery goroutine now hangs in the app
	case <-time.After(5 * time.Second):
		t.Fatal("the first update never reached the app")
	}
	// Fill the queue; the next emit then waits.
	for i := range queueSize {
		if err := f.emit(id, item(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- f.emit(id, item("overflow")) }()
	select {
	case err := <-blocked:
		t.Fatalf("emit on a full queue returned %v at once, want it to wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	if err := b.Unsubscribe(context.Background(), "cfg", id); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Unsubscribe took %v with a hanging app", d)
	}
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("the waiting handler reported success after the subscription ended")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the store's handler stayed blocked after Unsubscribe")
	}
}

// TestStreams covers SubscribeStream, UnsubscribeID and Close.
func TestStreams(t *testing.T) {
	b, f := newBlock(t, nil, "cfg", "other")
	ctx := context.Background()
	st, err := b.SubscribeStream(ctx, SubscribeRequest{Store: "cfg"})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		if err := f.emit(st.ID, item(v)); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"1", "2"} {
		select {
		case e := <-st.Updates():
			if e.Items["k"].Value != v {
				t.Fatalf("update %v, want %s", e.Items["k"], v)
			}
		case <-time.After(time.Second):
			t.Fatal("no update")
		}
	}
	// Empty updates are dropped.
	if err := f.emit(st.ID, nil); err != nil || len(st.Updates()) != 0 {
		t.Fatalf("empty update: %v, queued %d", err, len(st.Updates()))
	}
	// By id alone, whatever the store name says.
	if err := b.UnsubscribeID(ctx, "", st.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Done():
	default:
		t.Fatal("Done not closed after UnsubscribeID")
	}
	st.Close()
	wantKind(t, b.UnsubscribeID(ctx, "cfg", st.ID), apierr.ConfigurationUnsubscribe)

	// A request abandoned during Subscribe leaves nothing behind.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = b.SubscribeStream(cctx, SubscribeRequest{Store: "cfg"})
	wantKind(t, err, apierr.Canceled)
	if b.Subscriptions() != 0 {
		t.Fatalf("%d subscriptions after an abandoned subscribe", b.Subscriptions())
	}
}

func TestCloseEndsEverything(t *testing.T) {
	_, port := startHTTPApp(t, nil)
	ready := make(chan struct{}) // never ready: delivery goroutines wait
	app := newApp(t, port, "http", ready)
	before := runtime.NumGoroutine()
	b := New(app, slog.New(slog.DiscardHandler))
	f := newFakeStore()
	if err := b.Add("cfg", f); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for range 3 {
		id, err := b.SubscribeApp(ctx, SubscribeRequest{Store: "cfg"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	st, err := b.SubscribeStream(ctx, SubscribeRequest{Store: "cfg"})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, st.ID)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-st.Done():
	default:
		t.Fatal("stream not done after Close")
	}
	f.mu.Lock()
	if !f.closed || len(f.subs) != 0 || len(f.unsubscribe) != len(ids) {
		t.Errorf("store closed=%v, live subs %v, unsubscribed %v", f.closed, f.subs, f.unsubscribe)
	}
	f.mu.Unlock()
	if _, err := b.SubscribeStream(ctx, SubscribeRequest{Store: "cfg"}); err == nil {
		t.Error("subscribe after Close succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// grpcApp is an app serving AppCallback.OnInvoke.
type grpcApp struct {
	runtimev1.UnimplementedAppCallbackServer
	got chan *commonv1.InvokeRequest
}

func (g *grpcApp) OnInvoke(_ context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	g.got <- in
	return &commonv1.InvokeResponse{}, nil
}

// TestGRPCAppDelivery checks HTTP-API subscriptions reach a gRPC app as
// OnInvoke of the same path, as daprd's gRPC app channel does.
func TestGRPCAppDelivery(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ga := &grpcApp{got: make(chan *commonv1.InvokeRequest, 10)}
	runtimev1.RegisterAppCallbackServer(srv, ga)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	ready := make(chan struct{})
	close(ready)
	b, f := newBlock(t, newApp(t, l.Addr().(*net.TCPAddr).Port, "grpc", ready), "cfg")
	id, err := b.SubscribeApp(context.Background(), SubscribeRequest{Store: "cfg"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.emit(id, item("g")); err != nil {
		t.Fatal(err)
	}
	select {
	case in := <-ga.got:
		var body updateJSON
		if in.GetMethod() != "/configuration/cfg/k" || in.GetHttpExtension().GetVerb() != commonv1.HTTPExtension_POST || in.GetContentType() != "application/json" {
			t.Fatalf("OnInvoke %v", in)
		}
		if err := json.Unmarshal(in.GetData().GetValue(), &body); err != nil || body.ID != id || body.Items["k"].Value != "g" {
			t.Fatalf("OnInvoke data %s", in.GetData().GetValue())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the gRPC app got nothing")
	}
}

func TestWireItems(t *testing.T) {
	got, _ := json.Marshal(WireItems(map[string]*Item{
		"full":  {Value: "v", Version: "1", Metadata: map[string]string{"a": "b"}},
		"bare":  {Value: "v"},
		"gone":  nil,
		"empty": {},
	}))
	want := `{"bare":{"value":"v"},"empty":{},"full":{"value":"v","version":"1","metadata":{"a":"b"}},"gone":{}}`
	if string(got) != want {
		t.Fatalf("WireItems = %s, want %s", got, want)
	}
	if strings.Contains(string(got), "null") {
		t.Fatal("null in JSON")
	}
}
