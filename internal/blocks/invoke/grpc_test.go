package invoke_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func invokeReq(id, method, verb string, data []byte) *runtimev1.InvokeServiceRequest {
	m := &commonv1.InvokeRequest{Method: method, ContentType: "text/plain", Data: &anypb.Any{Value: data}}
	if v, ok := commonv1.HTTPExtension_Verb_value[verb]; ok {
		m.HttpExtension = &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_Verb(v), Querystring: "q=1"}
	}
	return &runtimev1.InvokeServiceRequest{Id: id, Message: m}
}

// TestInvokeServiceHTTPApp: gRPC InvokeService to an HTTP app maps the
// app's status as daprd does.
func TestInvokeServiceHTTPApp(t *testing.T) {
	a, _ := pair(t, echoApp(t), "")
	var header metadata.MD
	resp, err := a.Dapr.InvokeService(ctx(t), invokeReq("b", "orders/1", "POST", []byte("payload")), grpc.Header(&header))
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	if err := json.Unmarshal(resp.GetData().GetValue(), &s); err != nil {
		t.Fatalf("%q: %v", resp.GetData().GetValue(), err)
	}
	if s.Method != "POST" || s.Path != "/orders/1" || s.Query != "q=1" || s.Body != "payload" || s.Header.Get("Content-Type") != "text/plain" || s.Header.Get("Dapr-Caller-App-Id") != "a" {
		t.Fatalf("app saw %+v", s)
	}
	if resp.GetContentType() != "application/json" || header.Get("dapr-http-status")[0] != "200" || header.Get("x-app")[0] != "echo" {
		t.Fatalf("content type %q, header %v", resp.GetContentType(), header)
	}

	// daprd's table (messaging/v1 CodeFromHTTPStatus), quirks included.
	for status_, want := range map[int]codes.Code{
		201: codes.OK, 204: codes.OK, 400: codes.Internal, 401: codes.Unauthenticated, 403: codes.PermissionDenied,
		404: codes.NotFound, 408: codes.Canceled, 409: codes.AlreadyExists, 418: codes.Unknown, 429: codes.ResourceExhausted,
		500: codes.Unknown, 501: codes.Unimplemented, 503: codes.Unavailable, 504: codes.DeadlineExceeded,
	} {
		t.Run(strconv.Itoa(status_), func(t *testing.T) {
			var header metadata.MD
			resp, err := a.Dapr.InvokeService(ctx(t), invokeReq("b", fmt.Sprintf("status/%d", status_), "GET", nil), grpc.Header(&header))
			if got := header.Get("dapr-http-status"); len(got) != 1 || got[0] != strconv.Itoa(status_) {
				t.Errorf("dapr-http-status = %v", got)
			}
			st := status.Convert(err)
			if st.Code() != want {
				t.Fatalf("HTTP %d → %v (%v), want %v", status_, st.Code(), err, want)
			}
			if want == codes.OK {
				if status_ != 204 && string(resp.GetData().GetValue()) != fmt.Sprintf("reply %d", status_) {
					t.Fatalf("data %q", resp.GetData().GetValue())
				}
				return
			}
			if st.Message() != http.StatusText(status_) {
				t.Errorf("message %q, want %q", st.Message(), http.StatusText(status_))
			}
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if i, ok := d.(*errdetails.ErrorInfo); ok {
					info = i
				}
			}
			if info == nil || info.GetDomain() != "dapr.io" || info.GetMetadata()["http.code"] != strconv.Itoa(status_) || info.GetMetadata()["http.error_message"] != fmt.Sprintf("reply %d", status_) {
				t.Fatalf("details %v", st.Details())
			}
		})
	}

	// An HTTP app needs a verb; daprd reports the callee's refusal as
	// Internal, naming it.
	_, err = a.Dapr.InvokeService(ctx(t), invokeReq("b", "x", "NONE", nil))
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "invalid HTTP verb") || !strings.Contains(st.Message(), "failed to invoke, id: b") {
		t.Fatalf("no verb: %v", err)
	}
	_, err = a.Dapr.InvokeService(ctx(t), invokeReq("nobody", "x", "GET", nil))
	if st := status.Convert(err); st.Code() != codes.Internal || !strings.Contains(st.Message(), `app id "nobody"`) {
		t.Fatalf("unknown app: %v", err)
	}
}

// callbackApp is a gRPC app: OnInvoke echoes the request, or fails with
// the code named by the method "fail/<code>".
type callbackApp struct {
	runtimev1.UnimplementedAppCallbackServer
	calls atomic.Int32
}

func (c *callbackApp) OnInvoke(ctx context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	c.calls.Add(1)
	if code, ok := strings.CutPrefix(in.GetMethod(), "fail/"); ok {
		n, _ := strconv.Atoi(code)
		st, _ := status.New(codes.Code(n), "app says no").WithDetails(&errdetails.ErrorInfo{Reason: "NOPE", Domain: "app"})
		return nil, st.Err()
	}
	if in.GetMethod() == "typed" {
		return &commonv1.InvokeResponse{ContentType: "application/custom", Data: &anypb.Any{TypeUrl: in.GetData().GetTypeUrl() + "/back", Value: in.GetData().GetValue()}}, nil
	}
	if in.GetMethod() == "wait" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetHeader(ctx, metadata.Pairs("x-app-header", "h"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-app-trailer", "t"))
	echo := fmt.Sprintf("%s|%s|%s|%s|caller=%s|custom=%s", in.GetMethod(), in.GetContentType(), in.GetData().GetValue(),
		in.GetHttpExtension().GetVerb(), strings.Join(md.Get("dapr-caller-app-id"), ","), strings.Join(md.Get("x-custom"), ","))
	return &commonv1.InvokeResponse{ContentType: "text/echo", Data: &anypb.Any{Value: []byte(echo)}}, nil
}

// TestInvokeServiceGRPCApp: InvokeService to a gRPC app passes the request
// as-is and the app's answer back, statuses included; HTTP callers get the
// status mapped to HTTP with the JSON google.rpc.Status.
func TestInvokeServiceGRPCApp(t *testing.T) {
	app := &callbackApp{}
	a, _ := pair(t, mechatest.GRPCApp(t, app), "grpc")
	var header, trailer metadata.MD
	c := metadata.AppendToOutgoingContext(ctx(t), "x-custom", "c1")
	resp, err := a.Dapr.InvokeService(c, invokeReq("b", "hello", "", []byte("data")), grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(resp.GetData().GetValue()); got != "hello|text/plain|data|NONE|caller=a|custom=c1" || resp.GetContentType() != "text/echo" {
		t.Fatalf("response %q (%s)", got, resp.GetContentType())
	}
	if header.Get("x-app-header")[0] != "h" || trailer.Get("x-app-trailer")[0] != "t" {
		t.Fatalf("header %v trailer %v", header, trailer)
	}
	// A protobuf Any keeps its type URL both ways.
	typed := invokeReq("b", "typed", "", []byte{1, 2})
	typed.Message.Data.TypeUrl = "type.googleapis.com/test.In"
	resp, err = a.Dapr.InvokeService(ctx(t), typed)
	if err != nil || resp.GetData().GetTypeUrl() != "type.googleapis.com/test.In/back" || !bytes.Equal(resp.GetData().GetValue(), []byte{1, 2}) || resp.GetContentType() != "application/custom" {
		t.Fatalf("typed: %v, %v", resp, err)
	}
	if r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/typed", strBody("x")); r.Status != 200 || r.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("typed over HTTP: %d %v", r.Status, r.Header)
	}
	_, err = a.Dapr.InvokeService(ctx(t), invokeReq("b", "fail/5", "", nil))
	st := status.Convert(err)
	if st.Code() != codes.NotFound || st.Message() != "app says no" || len(st.Details()) != 1 {
		t.Fatalf("app error: %v %v", err, st.Details())
	}

	// HTTP caller.
	r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/hello", strBody("body"), "Content-Type", "text/plain", "X-Custom", "c2")
	if r.Status != 200 || string(r.Body) != "hello|text/plain|body|POST|caller=a|custom=c2" || r.Header.Get("Content-Type") != "text/echo" {
		t.Fatalf("HTTP caller: %d %q %v", r.Status, r.Body, r.Header)
	}
	for code, want := range map[codes.Code]int{codes.NotFound: 404, codes.InvalidArgument: 400, codes.Internal: 500, codes.Unavailable: 503, codes.PermissionDenied: 403, codes.Unauthenticated: 401} {
		r := do(t, "GET", a.URL+fmt.Sprintf("/v1.0/invoke/b/method/fail/%d", code), nil)
		var body struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != want || body.Code != int(code) || body.Message != "app says no" {
			t.Fatalf("HTTP caller, app code %v: %d %s, want %d", code, r.Status, r.Body, want)
		}
	}
}

// TestInvokeServiceDeadline: the caller's deadline reaches the app.
func TestInvokeServiceDeadline(t *testing.T) {
	cancelled := make(chan struct{}, 1)
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(30 * time.Second):
		}
	}))
	a, _ := pair(t, port, "")
	c, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	defer cancel()
	_, err := a.Dapr.InvokeService(c, invokeReq("b", "slow", "GET", nil))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the app's request was not cancelled when the deadline passed")
	}
	// A gRPC app sees it too.
	app := &callbackApp{}
	g := mechatest.Start(t, mechatest.App("g", mechatest.GRPCApp(t, app), "grpc"))
	c, cancel = context.WithTimeout(ctx(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := g.Dapr.InvokeService(c, invokeReq("g", "wait", "", nil)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("gRPC app: got %v, want DeadlineExceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("the deadline did not end the call")
	}
}

func internalClient(t *testing.T, addr string) internalv1.ServiceInvocationClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return internalv1.NewServiceInvocationClient(conn)
}

// TestCallLocalUnary: a daprd-style unary caller reaches the app through
// the internal server.
func TestCallLocalUnary(t *testing.T) {
	_, b := pair(t, echoApp(t), "")
	c := internalClient(t, b.InternalAddr)
	req := internalv1.NewInternalInvokeRequest("unary/path").WithHTTPExtension("PUT", "k=v").WithContentType("text/plain").WithData([]byte("u")).
		WithMetadata(map[string][]string{"dapr-caller-app-id": {"daprd"}, "X-Thing": {"1"}})
	resp, err := c.CallLocal(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != 200 {
		t.Fatalf("status %v", resp.GetStatus())
	}
	var s seen
	if err := json.Unmarshal(resp.GetMessage().GetData().GetValue(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Method != "PUT" || s.Path != "/unary/path" || s.Query != "k=v" || s.Body != "u" || s.Header.Get("X-Thing") != "1" || s.Header.Get("Dapr-Caller-App-Id") != "daprd" {
		t.Fatalf("app saw %+v", s)
	}
	if resp.GetMessage().GetContentType() != "application/json" || resp.GetHeaders()["X-App"].GetValues()[0] != "echo" {
		t.Fatalf("response %v", resp)
	}
	// Malformed requests are refused, not crashed on.
	if _, err := c.CallLocal(ctx(t), &internalv1.InternalInvokeRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no message: %v", err)
	}
	if _, err := c.CallLocal(ctx(t), internalv1.NewInternalInvokeRequest("a?b").WithHTTPExtension("GET", "")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad method: %v", err)
	}
	// An invocation request is not an actor call.
	if _, err := c.CallActor(ctx(t), req); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CallActor: %v", err)
	}
}

// TestCallLocalStreamProtocol drives CallLocalStream by hand: chunks in
// order work, a wrong sequence number fails the call.
func TestCallLocalStreamProtocol(t *testing.T) {
	_, b := pair(t, echoApp(t), "")
	c := internalClient(t, b.InternalAddr)
	run := func(seqs ...uint64) (*internalv1.InternalInvokeResponse, string, error) {
		s, err := c.CallLocalStream(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		first := &internalv1.InternalInvokeRequestStream{Request: internalv1.NewInternalInvokeRequest("s").WithHTTPExtension("POST", "").
			WithMetadata(map[string][]string{"X-S": {"1"}})}
		for i, seq := range seqs {
			msg := first
			if i > 0 {
				msg = &internalv1.InternalInvokeRequestStream{}
			}
			msg.Payload = &commonv1.StreamPayload{Data: []byte(fmt.Sprintf("<%d>", seq)), Seq: seq}
			if err := s.Send(msg); err != nil {
				break
			}
		}
		s.CloseSend()
		m, err := s.Recv()
		if err != nil {
			return nil, "", err
		}
		var body bytes.Buffer
		body.Write(m.GetPayload().GetData())
		for {
			m, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, "", err
			}
			body.Write(m.GetPayload().GetData())
		}
		return m.GetResponse(), body.String(), nil
	}
	resp, body, err := run(0, 1, 2)
	if err != nil || resp.GetStatus().GetCode() != 200 || !strings.Contains(body, `"body":"\u003c0\u003e\u003c1\u003e\u003c2\u003e"`) {
		t.Fatalf("in order: %v %q %v", resp, body, err)
	}
	resp, _, err = run(0, 2)
	if err == nil && resp.GetStatus().GetCode() == 200 {
		t.Fatalf("a skipped sequence number was accepted")
	}
}

// oldSidecar is a callee that only knows unary CallLocal (daprd < 1.10).
type oldSidecar struct {
	internalv1.UnimplementedServiceInvocationServer
	unary atomic.Int32
}

func (o *oldSidecar) CallLocal(ctx context.Context, in *internalv1.InternalInvokeRequest) (*internalv1.InternalInvokeResponse, error) {
	o.unary.Add(1)
	return &internalv1.InternalInvokeResponse{
		Status:  &internalv1.Status{Code: 200},
		Message: &commonv1.InvokeResponse{ContentType: "text/plain", Data: &anypb.Any{Value: fmt.Appendf(nil, "old:%s:%d", in.GetMessage().GetMethod(), len(in.GetMessage().GetData().GetValue()))}},
	}, nil
}

// TestInvokeFallsBackToUnary: a callee answering Unimplemented to
// CallLocalStream gets the call again as unary CallLocal.
func TestInvokeFallsBackToUnary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	old := &oldSidecar{}
	gs := grpc.NewServer()
	internalv1.RegisterServiceInvocationServer(gs, old)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	registerFake(t, "old", l.Addr().String())
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "a"; o.MaxBodySize = 16 << 20 })

	r := do(t, "POST", a.URL+"/v1.0/invoke/old/method/m", strBody("hello"))
	if r.Status != 200 || string(r.Body) != "old:m:5" || old.unary.Load() != 1 {
		t.Fatalf("first call: %d %q, unary calls %d", r.Status, r.Body, old.unary.Load())
	}
	// Later calls go unary at once, streamed bodies included.
	big := struct{ io.Reader }{bytes.NewReader(make([]byte, 3<<20))}
	r = do(t, "POST", a.URL+"/v1.0/invoke/old/method/big", big)
	if r.Status != 200 || string(r.Body) != fmt.Sprintf("old:big:%d", 3<<20) || old.unary.Load() != 2 {
		t.Fatalf("streamed call: %d %q, unary calls %d", r.Status, r.Body, old.unary.Load())
	}
	resp, err := a.Dapr.InvokeService(ctx(t), invokeReq("old", "g", "GET", []byte("xy")))
	if err != nil || string(resp.GetData().GetValue()) != "old:g:2" {
		t.Fatalf("InvokeService: %v %v", resp, err)
	}
}
