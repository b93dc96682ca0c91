package benchmarks

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/components"
	cstate "github.com/mecha-dev/mecha/components/state"
	"github.com/mecha-dev/mecha/components/state/inmemory"
	"github.com/mecha-dev/mecha/internal/api/grpcapi"
	"github.com/mecha-dev/mecha/internal/api/httpapi"
	"github.com/mecha-dev/mecha/internal/blocks/state"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// valueSize matches `mecha bench`: 256 bytes stored per key.
const valueSize = 256

// rawValue is valueSize printable bytes; jsonValue is a JSON string of
// exactly valueSize bytes, quotes included (what the HTTP API stores).
var (
	rawValue  = bytes.Repeat([]byte("a"), valueSize)
	jsonValue = []byte(`"` + strings.Repeat("a", valueSize-2) + `"`)
	saveBody  = []byte(`[{"key":"k","value":` + string(jsonValue) + `}]`)
)

// quiet starts the sidecar without logs: nothing is logged per request, but
// the bench output stays readable.
func quiet(o *runtime.Options) { o.Logger = slog.New(slog.DiscardHandler) }

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, DisableCompression: true}}
}

// httpSaveGet does one save and one get, reusing buf for the bodies.
func httpSaveGet(b *testing.B, c *http.Client, base string, buf *bytes.Buffer) {
	req, _ := http.NewRequest(http.MethodPost, base+"/v1.0/state/statestore", bytes.NewReader(saveBody))
	req.Header.Set("Content-Type", "application/json")
	if status := send(b, c, req, buf); status != http.StatusNoContent {
		b.Fatalf("save: %d %s", status, buf.Bytes())
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/v1.0/state/statestore/k", nil)
	if status := send(b, c, req, buf); status != http.StatusOK || buf.Len() != valueSize {
		b.Fatalf("get: %d %q", status, buf.Bytes())
	}
}

func send(b *testing.B, c *http.Client, req *http.Request, buf *bytes.Buffer) int {
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		b.Fatal(err)
	}
	return resp.StatusCode
}

// serveLoopback serves h on 127.0.0.1 until the benchmark ends.
func serveLoopback(b *testing.B, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	b.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + l.Addr().String()
}

// BenchmarkStateHTTP is one save+get pair over HTTP/1.1 keep-alive on
// loopback. client+bare-server is the floor: the same client against a
// net/http server that only reads the body and writes a canned answer.
// Allocations include the client's (same process).
func BenchmarkStateHTTP(b *testing.B) {
	b.Run("sidecar/in-memory", func(b *testing.B) {
		s := mechatest.Start(b, quiet, mechatest.InMemory)
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			httpSaveGet(b, c, s.URL, &buf)
		}
	})
	b.Run("client+bare-server", func(b *testing.B) {
		base := serveLoopback(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(jsonValue)
		}))
		c := newHTTPClient()
		defer c.CloseIdleConnections()
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			httpSaveGet(b, c, base, &buf)
		}
	})
}

// stubDapr answers SaveState and GetState with canned replies.
type stubDapr struct {
	runtimev1.UnimplementedDaprServer
}

func (stubDapr) SaveState(context.Context, *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (stubDapr) GetState(context.Context, *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	return &runtimev1.GetStateResponse{Data: rawValue, Etag: "1"}, nil
}

func grpcSaveGet(b *testing.B, c runtimev1.DaprClient, save *runtimev1.SaveStateRequest, get *runtimev1.GetStateRequest) {
	ctx := context.Background()
	if _, err := c.SaveState(ctx, save); err != nil {
		b.Fatal(err)
	}
	resp, err := c.GetState(ctx, get)
	if err != nil || len(resp.GetData()) != valueSize {
		b.Fatalf("GetState: %v (%d bytes)", err, len(resp.GetData()))
	}
}

// BenchmarkStateGRPC is one SaveState+GetState pair over one gRPC
// connection on loopback; client+stub-server is the floor (grpc-go and
// protobuf on both ends, no Mecha code).
func BenchmarkStateGRPC(b *testing.B) {
	save := &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k", Value: rawValue}}}
	get := &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k"}
	b.Run("sidecar/in-memory", func(b *testing.B) {
		s := mechatest.Start(b, quiet, mechatest.InMemory)
		b.ReportAllocs()
		for b.Loop() {
			grpcSaveGet(b, s.Dapr, save, get)
		}
	})
	b.Run("client+stub-server", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := grpc.NewServer()
		runtimev1.RegisterDaprServer(srv, stubDapr{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(l)
		}()
		defer func() {
			srv.Stop()
			<-done
		}()
		conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithNoProxy())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		c := runtimev1.NewDaprClient(conn)
		b.ReportAllocs()
		for b.Loop() {
			grpcSaveGet(b, c, save, get)
		}
	})
}

// newBlock is a state block with one in-memory store named statestore.
func newBlock(b *testing.B) *state.Block {
	blk := state.New("bench", "default")
	s := inmemory.New(components.Deps{})
	if err := s.Init(context.Background(), components.Metadata{}); err != nil {
		b.Fatal(err)
	}
	if _, err := blk.Add("statestore", s, components.Metadata{Name: "statestore", Type: "state.in-memory"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = blk.Close() })
	return blk
}

// ready is an always-ready httpapi.Health.
type ready struct{}

func (ready) Outbound() error { return nil }
func (ready) Ready() error    { return nil }

// responseWriter is a reusable http.ResponseWriter that keeps the status and
// the body size only.
type responseWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *responseWriter) Header() http.Header { return w.h }
func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *responseWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// BenchmarkStateHandlers calls the transports' state handlers directly: no
// sockets, no client, no HTTP parsing or proto marshalling. What is left is
// routing, decoding, the block and the store, and encoding. The two requests
// per HTTP iteration are built once and reused (one allocation per
// iteration, the body's io.NopCloser, is the harness's).
func BenchmarkStateHandlers(b *testing.B) {
	b.Run("http/save+get", func(b *testing.B) {
		h := httpapi.Handler(httpapi.Deps{AppID: "bench", State: newBlock(b), Health: ready{}, MaxBodySize: 4 << 20})
		body := bytes.NewReader(saveBody)
		save, _ := http.NewRequest(http.MethodPost, "/v1.0/state/statestore", nil)
		save.Header.Set("Content-Type", "application/json")
		save.ContentLength = int64(len(saveBody))
		get, _ := http.NewRequest(http.MethodGet, "/v1.0/state/statestore/k", nil)
		w := &responseWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			body.Reset(saveBody)
			save.Body = io.NopCloser(body)
			w.reset()
			h.ServeHTTP(w, save)
			if w.status != http.StatusNoContent {
				b.Fatalf("save: %d", w.status)
			}
			w.reset()
			h.ServeHTTP(w, get)
			if w.status != http.StatusOK || w.n != valueSize {
				b.Fatalf("get: %d, %d bytes", w.status, w.n)
			}
		}
	})
	b.Run("grpc/save+get", func(b *testing.B) {
		srv := grpcapi.New(grpcapi.Deps{AppID: "bench", State: newBlock(b)})
		save := &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k", Value: rawValue}}}
		get := &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k"}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := srv.SaveState(ctx, save); err != nil {
				b.Fatal(err)
			}
			resp, err := srv.GetState(ctx, get)
			if err != nil || len(resp.GetData()) != valueSize {
				b.Fatalf("GetState: %v", err)
			}
		}
	})
}

// BenchmarkStateBlock is the state block alone (key prefixing, validation,
// error mapping) over the in-memory store, and the store by itself.
func BenchmarkStateBlock(b *testing.B) {
	ctx := context.Background()
	items := []state.SaveItem{{Key: "k", Value: rawValue}}
	getReq := state.GetRequest{Store: "statestore", Key: "k"}
	b.Run("block/save+get", func(b *testing.B) {
		blk := newBlock(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := blk.Save(ctx, "statestore", items); err != nil {
				b.Fatal(err)
			}
			if it, err := blk.Get(ctx, getReq); err != nil || len(it.Data) != valueSize {
				b.Fatalf("get: %v", err)
			}
		}
	})
	b.Run("block/save", func(b *testing.B) {
		blk := newBlock(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := blk.Save(ctx, "statestore", items); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("block/get", func(b *testing.B) {
		blk := newBlock(b)
		if err := blk.Save(ctx, "statestore", items); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if it, err := blk.Get(ctx, getReq); err != nil || len(it.Data) != valueSize {
				b.Fatalf("get: %v", err)
			}
		}
	})
	b.Run("store/set+get", func(b *testing.B) {
		s := inmemory.New(components.Deps{})
		if err := s.Init(ctx, components.Metadata{}); err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		set := &cstate.SetRequest{Key: "bench||k", Value: rawValue}
		get := &cstate.GetRequest{Key: "bench||k"}
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Set(ctx, set); err != nil {
				b.Fatal(err)
			}
			if resp, err := s.Get(ctx, get); err != nil || len(resp.Data) != valueSize {
				b.Fatalf("get: %v", err)
			}
		}
	})
}
