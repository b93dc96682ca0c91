package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/anypb"
)

// The target app of the invocation scenarios. It answers every call with
// a fixed body of the configured size (1 KiB by default) after reading the
// request:
//
//   - HTTP/1.1 on one port: any method and path (the scenarios POST /echo),
//     answered with the fixed body, except for the actor callbacks of one
//     actor type (benchActorType unless --actor-type says otherwise): GET
//     /dapr/config declares it, PUT /actors/{type}/{id}/method/{m} is
//     answered like any other call and DELETE /actors/{type}/{id}
//     (deactivation) with an empty 200;
//   - gRPC on another port: runtime.v1.AppCallback/OnInvoke (what a sidecar
//     in front of a gRPC app calls for InvokeService and /v1.0/invoke) and
//     grpc.testing.TestService/UnaryCall (the app's "own" service, reached
//     directly or through the sidecars' transparent gRPC proxying).
//
// `mecha bench invoke-all` runs it as a separate process (`mecha bench
// app`), so its CPU is accounted for apart from the load generator's and
// the load generator's garbage collector does not pause it; the smoke test
// runs it in-process with serveApp.

// appContentType is the content type of every request and answer.
const appContentType = "application/octet-stream"

// appMethod is the method the scenarios call on the app.
const appMethod = "echo"

// benchActorType is the actor type the app hosts by default.
const benchActorType = "BenchActor"

// benchApp holds the app's fixed answer.
type benchApp struct {
	testpb.UnimplementedTestServiceServer
	runtimev1.UnimplementedAppCallbackServer
	body []byte
	// actorConfig is the answer to GET /dapr/config; nil when the app
	// hosts no actor type (then the path is an ordinary call).
	actorConfig []byte
}

func newBenchApp(bodySize int, actorType string) *benchApp {
	a := &benchApp{body: rawValue(bodySize)}
	if actorType != "" {
		// Idle actors stay active for the whole run: a deactivation
		// (DELETE to the app) must not land in the measured window.
		a.actorConfig, _ = json.Marshal(map[string]any{
			"entities":                []string{actorType},
			"actorIdleTimeout":        "1h",
			"actorScanInterval":       "30s",
			"drainOngoingCallTimeout": "10s",
			"drainRebalancedActors":   true,
		})
	}
	return a
}

// ServeHTTP reads the request body and answers 200 with the fixed body,
// or the actor configuration, or an empty 200 for a deactivation.
func (a *benchApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	if a.actorConfig != nil {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/dapr/config":
			h["Content-Type"] = []string{"application/json"}
			_, _ = w.Write(a.actorConfig)
			return
		case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/actors/"):
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	h["Content-Type"] = []string{appContentType}
	h["Content-Length"] = []string{strconv.Itoa(len(a.body))}
	_, _ = w.Write(a.body)
}

// OnInvoke answers any method with the fixed body.
func (a *benchApp) OnInvoke(context.Context, *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	return &commonv1.InvokeResponse{Data: &anypb.Any{Value: a.body}, ContentType: appContentType}, nil
}

// UnaryCall answers with the fixed body as the payload.
func (a *benchApp) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: a.body}}, nil
}

// appServer is a running benchApp.
type appServer struct {
	HTTPAddr, GRPCAddr string
	httpSrv            *http.Server
	grpcSrv            *grpc.Server
	wg                 sync.WaitGroup
	mu                 sync.Mutex
	err                error
}

// serveApp starts the app on free ports of host (127.0.0.1 by default),
// hosting actorType ("": none), and returns once both listen; Close stops
// it.
func serveApp(host string, bodySize int, actorType string) (*appServer, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	hl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, err
	}
	gl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		hl.Close()
		return nil, err
	}
	app := newBenchApp(bodySize, actorType)
	s := &appServer{
		HTTPAddr: hl.Addr().String(),
		GRPCAddr: gl.Addr().String(),
		httpSrv:  &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute},
		grpcSrv:  grpc.NewServer(),
	}
	runtimev1.RegisterAppCallbackServer(s.grpcSrv, app)
	testpb.RegisterTestServiceServer(s.grpcSrv, app)
	s.wg.Go(func() {
		if err := s.httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.setErr(fmt.Errorf("app HTTP server: %w", err))
		}
	})
	s.wg.Go(func() {
		if err := s.grpcSrv.Serve(gl); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.setErr(fmt.Errorf("app gRPC server: %w", err))
		}
	})
	return s, nil
}

func (s *appServer) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// Close stops both servers, waits for them and returns the first serving
// error.
func (s *appServer) Close() error {
	_ = s.httpSrv.Close()
	s.grpcSrv.Stop()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// appAddrLine is what `mecha bench app` prints on its first line of stdout.
func appAddrLine(httpAddr, grpcAddr string) string {
	return "http " + httpAddr + " grpc " + grpcAddr
}

// parseAppAddrLine reads appAddrLine's output.
func parseAppAddrLine(line string) (httpAddr, grpcAddr string, err error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "http" || f[2] != "grpc" {
		return "", "", fmt.Errorf("unexpected first line from the bench app: %q", line)
	}
	return f[1], f[3], nil
}

func appCommand() *cobra.Command {
	var host, actorType string
	var bodySize int
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Run the target app of the invocation scenarios (HTTP echo and gRPC OnInvoke/UnaryCall, fixed-size answers)",
		Long: `Serve the app the invocation scenarios call: HTTP/1.1 on one free port (any
method and path, answered 200 with --body-size bytes) and gRPC on another
(runtime.v1.AppCallback/OnInvoke and grpc.testing.TestService/UnaryCall, same
answer). It also hosts one actor type (--actor-type): GET /dapr/config
declares it, actor method calls get the same answer, and deactivations an
empty 200. The first line of stdout is "http HOST:PORT grpc HOST:PORT". Runs until
Ctrl-C or SIGTERM. Put a sidecar (mecha or daprd) in front of it with
--app-port PORT [--app-protocol grpc] to benchmark any of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateBodySize(bodySize); err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, err := serveApp(host, bodySize, actorType)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), appAddrLine(s.HTTPAddr, s.GRPCAddr))
			<-ctx.Done()
			return s.Close()
		},
	}
	cmd.Flags().StringVar(&host, "listen", "127.0.0.1", "address to listen on")
	cmd.Flags().IntVar(&bodySize, "body-size", 1024, "bytes of every answer")
	cmd.Flags().StringVar(&actorType, "actor-type", benchActorType, "the actor type GET /dapr/config declares (\"\": none, and /dapr/config is an ordinary call)")
	return cmd
}

func validateBodySize(n int) error {
	if n < 1 || n > 4<<20 {
		return fmt.Errorf("--body-size %d must be between 1 and 4194304", n)
	}
	return nil
}

// startApp execs `mecha bench app` from bin, with more flags args, and
// waits for its addresses. The returned process has httpAddr and grpcAddr
// set; the caller must call Stop.
func startApp(ctx context.Context, bin, logDir string, bodySize int, env []string, args ...string) (*sidecarProc, error) {
	args = append([]string{"bench", "app", "--body-size", strconv.Itoa(bodySize)}, args...)
	p, line, err := startLineProc(ctx, "app", bin, args, logDir, env)
	if err != nil {
		return nil, err
	}
	if p.httpAddr, p.grpcAddr, err = parseAppAddrLine(line); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}
