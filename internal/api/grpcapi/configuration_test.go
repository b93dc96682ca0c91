package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/blocks/configuration/cfgstores"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

const cfgWait = 10 * time.Second

func cfgApp(o *runtime.Options) { o.AppID = fmt.Sprintf("cfg%d", time.Now().UnixNano()) }

func cfgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func cfgWrite(t *testing.T, w cfgstores.Writer, key, value string) {
	t.Helper()
	if err := w.Set(cfgCtx(t), key, value); err != nil {
		t.Fatalf("writing %s=%s into the backend: %v", key, value, err)
	}
}

// recvResult is one Recv of a subscription stream.
type recvResult struct {
	msg *runtimev1.SubscribeConfigurationResponse
	err error
}

// cfgStream reads a SubscribeConfiguration stream in the background, so
// tests can wait for messages with a deadline.
type cfgStream struct {
	id     string
	cancel context.CancelFunc
	ch     chan recvResult
}

func subscribeStream(t *testing.T, c runtimev1.DaprClient, alpha bool, store string, keys ...string) *cfgStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req := &runtimev1.SubscribeConfigurationRequest{StoreName: store, Keys: keys}
	var recv func() (*runtimev1.SubscribeConfigurationResponse, error)
	if alpha {
		st, err := c.SubscribeConfigurationAlpha1(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		recv = st.Recv
	} else {
		st, err := c.SubscribeConfiguration(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		recv = st.Recv
	}
	s := &cfgStream{cancel: cancel, ch: make(chan recvResult, 64)}
	go func() {
		for {
			m, err := recv()
			s.ch <- recvResult{m, err}
			if err != nil {
				return
			}
		}
	}()
	first := s.next(t)
	if first.err != nil {
		t.Fatalf("SubscribeConfiguration(%s, %v): %v", store, keys, first.err)
	}
	if first.msg.GetId() == "" || len(first.msg.GetItems()) != 0 {
		t.Fatalf("first message = %v, want only the subscription id", first.msg)
	}
	s.id = first.msg.GetId()
	return s
}

func (s *cfgStream) next(t *testing.T) recvResult {
	t.Helper()
	select {
	case r := <-s.ch:
		return r
	case <-time.After(cfgWait):
		t.Fatalf("no message on the configuration stream within %v", cfgWait)
		return recvResult{}
	}
}

func (s *cfgStream) update(t *testing.T) *runtimev1.SubscribeConfigurationResponse {
	t.Helper()
	r := s.next(t)
	if r.err != nil {
		t.Fatalf("stream ended: %v", r.err)
	}
	if r.msg.GetId() != s.id {
		t.Fatalf("update id %q, want %q", r.msg.GetId(), s.id)
	}
	return r.msg
}

// TestConfigurationOverGRPC drives the gRPC configuration API against every
// store.
func TestConfigurationOverGRPC(t *testing.T) {
	for _, sc := range cfgstores.Cases() {
		t.Run(sc.Name, func(t *testing.T) {
			yaml, w := sc.Setup(t, "configstore")
			app := cfgstores.NewApp(t)
			s := mechatest.Start(t, func(o *runtime.Options) {
				cfgApp(o)
				o.AppPort = app.Port
			}, yaml)
			testConfigurationGRPC(t, s, w, app)
		})
	}
}

func testConfigurationGRPC(t *testing.T, s *mechatest.Sidecar, w cfgstores.Writer, app *cfgstores.App) {
	c := s.Dapr
	p := fmt.Sprintf("cfggrpc%d-", time.Now().UnixNano())
	a, b, other := p+"a", p+"b", p+"other"
	cfgWrite(t, w, a, "1")
	cfgWrite(t, w, b, "2")

	t.Run("get", func(t *testing.T) {
		for _, get := range []func(context.Context, *runtimev1.GetConfigurationRequest) (*runtimev1.GetConfigurationResponse, error){
			func(ctx context.Context, in *runtimev1.GetConfigurationRequest) (*runtimev1.GetConfigurationResponse, error) {
				return c.GetConfiguration(ctx, in)
			},
			func(ctx context.Context, in *runtimev1.GetConfigurationRequest) (*runtimev1.GetConfigurationResponse, error) {
				return c.GetConfigurationAlpha1(ctx, in)
			},
		} {
			resp, err := get(cfgCtx(t), &runtimev1.GetConfigurationRequest{StoreName: "configstore", Keys: []string{a, b, p + "missing"}, Metadata: map[string]string{"hint": "x"}})
			if err != nil {
				t.Fatal(err)
			}
			items := resp.GetItems()
			if len(items) != 2 || items[a].GetValue() != "1" || items[b].GetValue() != "2" || items[a].GetVersion() == "" {
				t.Fatalf("GetConfiguration = %v", items)
			}
		}
		resp, err := c.GetConfiguration(cfgCtx(t), &runtimev1.GetConfigurationRequest{StoreName: "configstore"})
		if err != nil || resp.GetItems()[a].GetValue() != "1" {
			t.Fatalf("GetConfiguration(all) = %v, %v", resp.GetItems(), err)
		}
		resp, err = c.GetConfiguration(cfgCtx(t), &runtimev1.GetConfigurationRequest{StoreName: "configstore", Keys: []string{p + "missing"}})
		if err != nil || len(resp.GetItems()) != 0 {
			t.Fatalf("GetConfiguration(missing) = %v, %v; want no items", resp.GetItems(), err)
		}
	})

	t.Run("subscribe streams updates", func(t *testing.T) {
		st := subscribeStream(t, c, false, "configstore", a, b)
		cfgWrite(t, w, a, "10")
		m := st.update(t)
		if it := m.GetItems()[a]; len(m.GetItems()) != 1 || it.GetValue() != "10" || it.GetVersion() == "" {
			t.Fatalf("update = %v", m)
		}
		cfgWrite(t, w, other, "unwatched")
		cfgWrite(t, w, b, "20")
		m = st.update(t)
		if _, bad := m.GetItems()[other]; bad || m.GetItems()[b].GetValue() != "20" {
			t.Fatalf("update = %v, want only %s", m, b)
		}
		if err := w.Delete(cfgCtx(t), b); err != nil {
			t.Fatal(err)
		}
		m = st.update(t)
		if it, ok := m.GetItems()[b]; !ok || it.GetValue() != "" {
			t.Fatalf("delete update = %v", m)
		}
	})

	t.Run("unsubscribe ends the stream", func(t *testing.T) {
		for _, alpha := range []bool{false, true} {
			st := subscribeStream(t, c, alpha, "configstore", a)
			unsub := c.UnsubscribeConfiguration
			if alpha {
				unsub = c.UnsubscribeConfigurationAlpha1
			}
			resp, err := unsub(cfgCtx(t), &runtimev1.UnsubscribeConfigurationRequest{StoreName: "configstore", Id: st.id})
			if err != nil || !resp.GetOk() || resp.GetMessage() != "" {
				t.Fatalf("UnsubscribeConfiguration = %v, %v", resp, err)
			}
			if r := st.next(t); !errors.Is(r.err, io.EOF) {
				t.Fatalf("after unsubscribe the stream gave %v, %v; want a clean end (EOF)", r.msg, r.err)
			}
			resp, err = unsub(cfgCtx(t), &runtimev1.UnsubscribeConfigurationRequest{StoreName: "configstore", Id: st.id})
			if err != nil || resp.GetOk() || !strings.Contains(resp.GetMessage(), st.id) {
				t.Fatalf("second UnsubscribeConfiguration = %v, %v; want ok false naming the id", resp, err)
			}
		}
	})

	t.Run("cancelling the stream ends the subscription", func(t *testing.T) {
		st := subscribeStream(t, c, false, "configstore", a)
		st.cancel()
		mechatest.Eventually(t, cfgWait, func() error {
			resp, err := c.UnsubscribeConfiguration(cfgCtx(t), &runtimev1.UnsubscribeConfigurationRequest{StoreName: "configstore", Id: st.id})
			if err != nil {
				return err
			}
			if resp.GetOk() {
				return fmt.Errorf("subscription %s still existed after its stream was cancelled", st.id)
			}
			return nil
		})
	})

	t.Run("an HTTP subscription can be ended over gRPC", func(t *testing.T) {
		r := s.Do(t, "GET", "/v1.0/configuration/configstore/subscribe?key="+a, nil)
		var sub struct {
			ID string `json:"id"`
		}
		r.JSON(t, &sub)
		if r.Status != http.StatusOK || sub.ID == "" {
			t.Fatalf("HTTP subscribe = %d %s", r.Status, r.Body)
		}
		cfgWrite(t, w, a, "for-http")
		app.Next(t, cfgWait, cfgstores.For(sub.ID))
		resp, err := c.UnsubscribeConfiguration(cfgCtx(t), &runtimev1.UnsubscribeConfigurationRequest{Id: sub.ID})
		if err != nil || !resp.GetOk() {
			t.Fatalf("UnsubscribeConfiguration(HTTP subscription) = %v, %v", resp, err)
		}
		if r := s.Do(t, "GET", "/v1.0/configuration/configstore/"+sub.ID+"/unsubscribe", nil); r.Status != http.StatusInternalServerError {
			t.Fatalf("HTTP unsubscribe after gRPC unsubscribe = %d %s", r.Status, r.Body)
		}
	})
}

func wantReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st := wantCode(t, err, code)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return
		}
	}
	t.Fatalf("error %v lacks ErrorInfo reason %s (details %v)", err, reason, st.Details())
}

func TestConfigurationGRPCErrors(t *testing.T) {
	yaml, _ := cfgstores.SQLite(t, "configstore")
	s := mechatest.Start(t, cfgApp, yaml)
	bare := mechatest.Start(t, cfgApp, mechatest.InMemory)
	ctx := cfgCtx(t)

	_, err := s.Dapr.GetConfiguration(ctx, &runtimev1.GetConfigurationRequest{StoreName: "nope"})
	wantReason(t, err, codes.InvalidArgument, "ERR_CONFIGURATION_STORE_NOT_FOUND")
	_, err = bare.Dapr.GetConfigurationAlpha1(ctx, &runtimev1.GetConfigurationRequest{StoreName: "configstore"})
	wantReason(t, err, codes.FailedPrecondition, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED")
	if st := status.Convert(err); st.Message() != "configuration stores not configured" {
		t.Errorf("message %q", st.Message())
	}

	for _, tc := range []struct {
		c      runtimev1.DaprClient
		store  string
		code   codes.Code
		reason string
	}{
		{s.Dapr, "nope", codes.InvalidArgument, "ERR_CONFIGURATION_STORE_NOT_FOUND"},
		{bare.Dapr, "configstore", codes.FailedPrecondition, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"},
	} {
		stream, err := tc.c.SubscribeConfiguration(ctx, &runtimev1.SubscribeConfigurationRequest{StoreName: tc.store})
		if err == nil {
			_, err = stream.Recv()
		}
		wantReason(t, err, tc.code, tc.reason)
	}

	// gRPC subscriptions need no app channel.
	st := subscribeStream(t, s.Dapr, false, "configstore")
	st.cancel()

	resp, err := s.Dapr.UnsubscribeConfiguration(ctx, &runtimev1.UnsubscribeConfigurationRequest{StoreName: "configstore", Id: "no-such-id"})
	if err != nil || resp.GetOk() || resp.GetMessage() != "failed to unsubscribe to configuration request no-such-id: subscription does not exist" {
		t.Fatalf("UnsubscribeConfiguration(unknown) = %v, %v", resp, err)
	}
	resp, err = bare.Dapr.UnsubscribeConfigurationAlpha1(ctx, &runtimev1.UnsubscribeConfigurationRequest{StoreName: "configstore", Id: "x"})
	if err != nil || resp.GetOk() {
		t.Fatalf("UnsubscribeConfiguration without stores = %v, %v", resp, err)
	}
}

// TestConfigurationStreamEndsOnShutdown closes a sidecar with an open
// subscription stream: the stream ends and Close does not hang.
func TestConfigurationStreamEndsOnShutdown(t *testing.T) {
	yaml, _ := cfgstores.SQLite(t, "configstore")
	s := mechatest.Start(t, func(o *runtime.Options) {
		cfgApp(o)
		o.GracefulShutdown = 2 * time.Second
	}, yaml)
	st := subscribeStream(t, s.Dapr, false, "configstore", "k")
	done := make(chan error, 1)
	go func() { done <- s.RT.Close(context.Background()) }()
	if r := st.next(t); r.err == nil {
		t.Fatalf("stream delivered %v while the sidecar closed, want its end", r.msg)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close hung with an open configuration stream")
	}
}
