package internalgrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// Idle connections to sidecars are closed after connIdle; the pool checks
// every sweepEvery.
const (
	connIdle   = 5 * time.Minute
	sweepEvery = time.Minute
)

// Client calls other sidecars' ServiceInvocation service, with one pooled
// connection per address (HTTP/2 multiplexes the calls). It implements
// invoke.Remote.
type Client struct {
	maxBody int
	log     *slog.Logger
	opts    []grpc.DialOption

	mu     sync.RWMutex
	conns  map[string]*conn
	closed bool
	// unaryOnly holds the addresses of sidecars that answered Unimplemented
	// to CallLocalStream (daprd before 1.10).
	unaryOnly sync.Map

	stop chan struct{}
	wg   sync.WaitGroup
}

type conn struct {
	cc       *grpc.ClientConn
	client   internalv1.ServiceInvocationClient
	inflight atomic.Int32
	lastUsed atomic.Int64 // unix nanos
}

var _ invoke.Remote = (*Client)(nil)

// NewClient returns a client; maxBody bounds unary messages. extra dial
// options are added to the defaults (tests).
func NewClient(maxBody int64, log *slog.Logger, extra ...grpc.DialOption) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		maxBody: int(maxBody),
		log:     log,
		conns:   map[string]*conn{},
		stop:    make(chan struct{}),
		opts: append([]grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(maxBody)), grpc.MaxCallSendMsgSize(int(maxBody))),
		}, extra...),
	}
	c.wg.Go(c.sweep)
	return c
}

// Close closes every connection; calls in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	close(c.stop)
	c.wg.Wait()
	var errs []error
	for _, cn := range conns {
		errs = append(errs, cn.cc.Close())
	}
	return errors.Join(errs...)
}

// acquire returns the connection to addr, counting the call in flight;
// release with cn.inflight.Add(-1).
func (c *Client) acquire(addr string) (*conn, error) {
	c.mu.RLock()
	cn := c.conns[addr]
	if cn != nil {
		cn.inflight.Add(1)
	}
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return nil, errors.New("the sidecar is shutting down")
	}
	if cn == nil {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errors.New("the sidecar is shutting down")
		}
		if cn = c.conns[addr]; cn == nil {
			cc, err := grpc.NewClient("passthrough:///"+addr, c.opts...)
			if err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("connecting to %s: %w", addr, err)
			}
			cn = &conn{cc: cc, client: internalv1.NewServiceInvocationClient(cc)}
			c.conns[addr] = cn
		}
		cn.inflight.Add(1)
		c.mu.Unlock()
	}
	cn.lastUsed.Store(time.Now().UnixNano())
	return cn, nil
}

// sweep closes connections nobody used for connIdle.
func (c *Client) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-connIdle).UnixNano()
		var idle []*conn
		c.mu.Lock()
		for addr, cn := range c.conns {
			if cn.inflight.Load() == 0 && cn.lastUsed.Load() < cutoff {
				delete(c.conns, addr)
				idle = append(idle, cn)
			}
		}
		c.mu.Unlock()
		for _, cn := range idle {
			cn.cc.Close()
		}
	}
}

// Call sends req to the sidecar at addr and returns the app's response; the
// caller closes its body, which ends the call. With tracing, each call is
// a client span whose context replaces the trace headers the caller sent
// (in the invocation's metadata and the call's gRPC metadata).
func (c *Client) Call(ctx context.Context, addr string, req *invokemsg.Request) (resp *invokemsg.Response, err error) {
	ctx, span := tracing.StartInvoke(ctx, invokemsg.Get(req.Metadata, invokemsg.DestinationAppID), req.Message.GetMethod(), addr)
	defer func() { tracing.End(span, err) }()
	tracing.InjectMD(ctx, req.Metadata)
	ctx = tracing.OutgoingGRPC(ctx)
	return c.call(ctx, addr, req)
}

func (c *Client) call(ctx context.Context, addr string, req *invokemsg.Request) (*invokemsg.Response, error) {
	cn, err := c.acquire(addr)
	if err != nil {
		return nil, err
	}
	release := func() { cn.inflight.Add(-1) }
	if _, ok := c.unaryOnly.Load(addr); ok {
		defer release()
		return c.callUnary(ctx, cn, req)
	}
	resp, err := c.callStream(ctx, cn, req, release)
	if err != nil && status.Code(err) == codes.Unimplemented {
		if _, loaded := c.unaryOnly.LoadOrStore(addr, true); !loaded {
			c.log.Warn("the sidecar of the target app does not support streaming service invocation (daprd before 1.10?); using unary calls with it", "address", addr)
		}
		if !req.InMemory() {
			return nil, fmt.Errorf("the sidecar at %s does not support streaming-based service invocation, and the streamed request body cannot be sent again: %w", addr, err)
		}
		cn, err := c.acquire(addr)
		if err != nil {
			return nil, err
		}
		defer cn.inflight.Add(-1)
		return c.callUnary(ctx, cn, req)
	}
	return resp, err
}

// classify marks errors the invocation block acts on.
func classify(cn *conn, err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		// Reconnect at once next time instead of waiting out the backoff:
		// the callee may be back (or another one on its port).
		cn.cc.ResetConnectBackoff()
		return &markedError{err: err, mark: invoke.ErrUnreachable}
	case codes.PermissionDenied:
		return &markedError{err: err, mark: invoke.ErrPermissionDenied}
	}
	return err
}

// markedError is err, also matching mark with errors.Is.
type markedError struct {
	err  error
	mark error
}

func (e *markedError) Error() string   { return e.err.Error() }
func (e *markedError) Unwrap() []error { return []error{e.err, e.mark} }
func (e *markedError) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.err)
	return st
}

// requestHeader is req's message without its data (which travels as
// payload).
func requestHeader(req *invokemsg.Request) *internalv1.InternalInvokeRequest {
	m := req.Message
	hm := &commonv1.InvokeRequest{Method: m.GetMethod(), ContentType: m.GetContentType(), HttpExtension: m.GetHttpExtension()}
	if u := m.GetData().GetTypeUrl(); u != "" {
		hm.Data = &anypb.Any{TypeUrl: u}
	}
	return &internalv1.InternalInvokeRequest{Ver: internalv1.APIVersion_V1, Metadata: req.Metadata, Message: hm}
}

// callStream runs CallLocalStream: a goroutine sends the request while
// this one waits for the response header; the response body then streams
// from the call. release runs once the call is over.
func (c *Client) callStream(ctx context.Context, cn *conn, req *invokemsg.Request, release func()) (*invokemsg.Response, error) {
	sctx, cancel := context.WithCancel(ctx)
	// A body in memory that fits one message goes with the request header
	// in a single message that also ends the sending side (the same frames
	// as SendMsg + CloseSend, in one write), from this goroutine.
	single := req.InMemory() && len(req.Message.GetData().GetValue()) <= invokemsg.ChunkSize
	desc := &internalv1.ServiceInvocation_ServiceDesc.Streams[0]
	if single {
		desc = &singleMessageDesc
	}
	cs, err := cn.cc.NewStream(sctx, desc, internalv1.ServiceInvocation_CallLocalStream_FullMethodName)
	if err != nil {
		cancel()
		release()
		return nil, classify(cn, err)
	}
	s := &sendState{}
	var wg sync.WaitGroup
	if single {
		// io.EOF means the callee ended the call; RecvMsg reports why.
		msg := &internalv1.InternalInvokeRequestStream{Request: requestHeader(req)}
		if d := req.Message.GetData().GetValue(); len(d) > 0 {
			msg.Payload = &commonv1.StreamPayload{Data: d}
		}
		_ = cs.SendMsg(msg)
	} else {
		wg.Go(func() { s.send(cs, req, cancel) })
	}
	var once sync.Once
	done := func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			release()
		})
	}
	first := &internalv1.InternalInvokeResponseStream{}
	if err := cs.RecvMsg(first); err != nil {
		done()
		if s.bodyErr != nil {
			return nil, s.bodyErr
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the sidecar closed the call without a response")
		}
		return nil, classify(cn, err)
	}
	h := first.GetResponse()
	if h.GetStatus() == nil {
		done()
		return nil, errors.New("response does not contain the required fields in the leading chunk")
	}
	resp := &invokemsg.Response{
		Status:        h.GetStatus(),
		Headers:       h.GetHeaders(),
		Trailers:      h.GetTrailers(),
		ContentType:   h.GetMessage().GetContentType(),
		DataTypeURL:   h.GetMessage().GetData().GetTypeUrl(),
		ContentLength: -1,
	}
	if resp.IsHTTP() {
		resp.ContentLength = invokemsg.ContentLength(resp.Headers)
	}
	body := &streamBody{cs: cs, done: done, s: s}
	if err := body.take(first); err != nil {
		done()
		return nil, err
	}
	resp.Body = body
	return resp, nil
}

// singleMessageDesc is CallLocalStream as a server-streaming call: the
// client's one message carries END_STREAM.
var singleMessageDesc = grpc.StreamDesc{StreamName: "CallLocalStream", ServerStreams: true}

// sendState is what the sending goroutine reports.
type sendState struct {
	// bodyErr is set when reading the request body failed (for example a
	// client that sent more than the size limit); it explains a failed
	// call better than the cancellation it causes.
	bodyErr error
}

// send writes the request header with the first chunk of the body, then
// the rest of the body, then closes the sending side. A body read error
// cancels the call.
func (s *sendState) send(cs grpc.ClientStream, req *invokemsg.Request, cancel context.CancelFunc) {
	msg := &internalv1.InternalInvokeRequestStream{Request: requestHeader(req)}
	var seq uint64
	sendChunk := func(data []byte) bool {
		if len(data) > 0 {
			msg.Payload = &commonv1.StreamPayload{Data: data, Seq: seq}
			seq++
		}
		err := cs.SendMsg(msg)
		msg.Request, msg.Payload = nil, nil
		// io.EOF: the callee ended the call; RecvMsg reports why.
		return err == nil
	}
	if req.InMemory() {
		data := req.Message.GetData().GetValue()
		for first := true; first || len(data) > 0; first = false {
			n := min(len(data), invokemsg.ChunkSize)
			if !sendChunk(data[:n]) {
				return
			}
			data = data[n:]
		}
		_ = cs.CloseSend()
		return
	}
	bufp := invokemsg.GetBuffer()
	defer invokemsg.PutBuffer(bufp)
	buf := *bufp
	for {
		n, rerr := req.Body.Read(buf)
		if n > 0 || msg.Request != nil {
			if !sendChunk(buf[:n]) {
				return
			}
		}
		if errors.Is(rerr, io.EOF) {
			_ = cs.CloseSend()
			return
		}
		if rerr != nil {
			s.bodyErr = fmt.Errorf("reading the request body: %w", rerr)
			cancel()
			return
		}
	}
}

// streamBody reads the response payload from the stream, checking the
// sequence numbers; closing it ends the call.
type streamBody struct {
	cs     grpc.ClientStream
	s      *sendState
	done   func()
	cur    []byte
	expect uint64
	msg    internalv1.InternalInvokeResponseStream
	err    error
}

// take accepts one message's payload.
func (b *streamBody) take(m *internalv1.InternalInvokeResponseStream) error {
	p := m.GetPayload()
	if p == nil {
		return nil
	}
	if p.GetSeq() != b.expect {
		return fmt.Errorf("invalid sequence number received: %d (expected: %d)", p.GetSeq(), b.expect)
	}
	b.expect++
	b.cur = p.GetData()
	return nil
}

// next receives the next message; b.err is set at the end or on failure.
func (b *streamBody) next() {
	b.msg.Reset()
	err := b.cs.RecvMsg(&b.msg)
	switch {
	case errors.Is(err, io.EOF):
		b.err = io.EOF
		b.done()
		return
	case err != nil:
		b.err = fmt.Errorf("error receiving the response: %w", err)
		b.done()
		return
	case b.msg.GetResponse() != nil:
		b.err = errors.New("response metadata found in non-leading chunk")
		b.done()
		return
	}
	if err := b.take(&b.msg); err != nil {
		b.err = err
		b.done()
	}
}

func (b *streamBody) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		b.next()
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// WriteTo writes each chunk as it arrives, without an intermediate copy.
func (b *streamBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		for len(b.cur) == 0 {
			if b.err != nil {
				if b.err == io.EOF {
					return total, nil
				}
				return total, b.err
			}
			b.next()
		}
		n, err := w.Write(b.cur)
		total += int64(n)
		b.cur = b.cur[n:]
		if err != nil {
			return total, err
		}
	}
}

// Close ends the call (cancelling it if the body was not read to the end).
func (b *streamBody) Close() error {
	b.done()
	return nil
}

// callUnary runs CallLocal with the whole body in the message.
func (c *Client) callUnary(ctx context.Context, cn *conn, req *invokemsg.Request) (*invokemsg.Response, error) {
	m := req.Message
	if !req.InMemory() {
		data, err := invokemsg.ReadAll(req.Body, req.ContentLength, int64(c.maxBody))
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		m = &commonv1.InvokeRequest{
			Method: m.GetMethod(), ContentType: m.GetContentType(), HttpExtension: m.GetHttpExtension(),
			Data: &anypb.Any{TypeUrl: m.GetData().GetTypeUrl(), Value: data},
		}
	}
	out, err := cn.client.CallLocal(ctx, &internalv1.InternalInvokeRequest{Ver: internalv1.APIVersion_V1, Metadata: req.Metadata, Message: m})
	if err != nil {
		return nil, classify(cn, err)
	}
	if out.GetStatus() == nil {
		return nil, errors.New("the response carries no status")
	}
	data := out.GetMessage().GetData().GetValue()
	return &invokemsg.Response{
		Status:        out.GetStatus(),
		Headers:       out.GetHeaders(),
		Trailers:      out.GetTrailers(),
		ContentType:   out.GetMessage().GetContentType(),
		DataTypeURL:   out.GetMessage().GetData().GetTypeUrl(),
		Body:          invokemsg.BytesBody(data),
		ContentLength: int64(len(data)),
	}, nil
}
