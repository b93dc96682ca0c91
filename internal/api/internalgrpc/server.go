// Package internalgrpc is the sidecar-to-sidecar transport of service
// invocation: Dapr's internal gRPC service dapr.proto.internals.v1.
// ServiceInvocation, served on the internal port (Server) and called on
// other sidecars (Client), with daprd's wire protocol so that a Mecha
// sidecar and a daprd can call each other.
//
// CallLocalStream is the streaming form daprd (1.10+) tries first: the first
// message carries the request (or response) header, later messages carry
// payload chunks numbered from 0, and each side closes its direction when
// done. Bodies therefore never sit whole in a sidecar. CallLocal is the
// unary form older sidecars use; the Client falls back to it when a callee
// answers Unimplemented. CallActor and CallActorReminder are the actor
// runtime's (actors.go).
//
// The same port carries the calls of Dapr's transparent gRPC proxy, for any
// service of the app's (proxied.go): UnknownService hands them to the proxy
// and Client.NewStream opens them on the pooled connections.
package internalgrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/blocks/invoke"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// Local delivers calls to this sidecar's app (the invocation block's
// CallLocal).
type Local interface {
	CallLocal(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error)
}

// Server implements internalv1.ServiceInvocationServer.
type Server struct {
	internalv1.UnimplementedServiceInvocationServer
	local   Local
	maxBody int64
	log     *slog.Logger
	// tracing, when set, gives each call a server span (SetTracing).
	tracing *tracing.Provider
	// actors serves CallActor (SetActors); nil answers Unimplemented.
	actors ActorHost
	// readers are the goroutines that feed streamed request bodies to the
	// app; they end with their streams.
	readers sync.WaitGroup
}

// NewServer returns the server; maxBody bounds bodies it must hold whole
// (unary calls).
func NewServer(local Local, maxBody int64, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{local: local, maxBody: maxBody, log: log}
}

// Register adds the service to gs.
func (s *Server) Register(gs *grpc.Server) { internalv1.RegisterServiceInvocationServer(gs, s) }

// SetTracing makes every call a server span of p, continuing the calling
// sidecar's trace; call it before the server serves.
func (s *Server) SetTracing(p *tracing.Provider) { s.tracing = p }

// Wait blocks until every body reader has stopped; call it after the gRPC
// server stopped.
func (s *Server) Wait() { s.readers.Wait() }

// CallLocal is the unary call: the whole request and response in one
// message each.
func (s *Server) CallLocal(ctx context.Context, in *internalv1.InternalInvokeRequest) (*internalv1.InternalInvokeResponse, error) {
	if in.GetMessage() == nil {
		return nil, status.Error(codes.InvalidArgument, "parsing InternalInvokeRequest error: field Message is nil")
	}
	ctx, span := s.tracing.StartCallLocal(ctx, internalv1.ServiceInvocation_CallLocal_FullMethodName, in.GetMessage().GetMethod(), in.GetMetadata())
	out, err := s.callLocal(ctx, in)
	tracing.End(span, err)
	return out, err
}

func (s *Server) callLocal(ctx context.Context, in *internalv1.InternalInvokeRequest) (*internalv1.InternalInvokeResponse, error) {
	req := &invokemsg.Request{Message: in.GetMessage(), Metadata: in.GetMetadata()}
	resp, err := s.local.CallLocal(ctx, req)
	if err != nil {
		return nil, callError(err)
	}
	defer resp.Body.Close()
	data, err := invokemsg.ReadAll(resp.Body, resp.ContentLength, s.maxBody)
	if err != nil {
		var tl *invokemsg.TooLargeError
		if errors.As(err, &tl) {
			return nil, status.Errorf(codes.ResourceExhausted, "the app's response %v", err)
		}
		return nil, status.Errorf(codes.Internal, "error invoking app channel: reading the response: %v", err)
	}
	return responseProto(resp, data), nil
}

// callError maps CallLocal's failures to the statuses daprd answers.
func callError(err error) error {
	switch {
	case errors.Is(err, invoke.ErrInvalidMethod):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, invoke.ErrNoAppChannel):
		return status.Error(codes.Internal, invoke.ErrNoAppChannel.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if st := status.FromContextError(err); st != nil {
			return st.Err()
		}
	}
	return status.Errorf(codes.Internal, "error invoking app channel: %v", err)
}

func responseProto(resp *invokemsg.Response, data []byte) *internalv1.InternalInvokeResponse {
	out := &internalv1.InternalInvokeResponse{
		Status:   resp.Status,
		Headers:  resp.Headers,
		Trailers: resp.Trailers,
		Message:  &commonv1.InvokeResponse{ContentType: resp.ContentType},
	}
	if data != nil || resp.DataTypeURL != "" {
		out.Message.Data = &anypb.Any{TypeUrl: resp.DataTypeURL, Value: data}
	}
	return out
}

// CallLocalStream is the streamed call: the request body is piped to the
// app as it arrives, and the app's body is sent back in chunks.
func (s *Server) CallLocalStream(stream internalv1.ServiceInvocation_CallLocalStreamServer) (err error) {
	first := &internalv1.InternalInvokeRequestStream{}
	if err := stream.RecvMsg(first); err != nil {
		return err
	}
	in := first.GetRequest()
	if in.GetMessage() == nil {
		return status.Error(codes.InvalidArgument, "parsing InternalInvokeRequest error: request does not contain the required fields in the leading chunk")
	}
	ctx, span := s.tracing.StartCallLocal(stream.Context(), internalv1.ServiceInvocation_CallLocalStream_FullMethodName, in.GetMessage().GetMethod(), in.GetMetadata())
	defer func() { tracing.End(span, err) }()
	req := &invokemsg.Request{Message: in.GetMessage(), Metadata: in.GetMetadata(), ContentLength: -1}
	// Callers close their side right after the last chunk. When the next
	// message is already that end, the whole body is in hand: the app gets
	// it from memory (its HTTP request then goes out in one write, with no
	// pipe and no reader goroutine). Otherwise the body streams through a
	// pipe fed by a reader goroutine.
	second := &internalv1.InternalInvokeRequestStream{}
	switch err := stream.RecvMsg(second); {
	case errors.Is(err, io.EOF):
		if err := inMemoryBody(req, first); err != nil {
			return err
		}
	case err != nil:
		return err
	case second.GetRequest() != nil:
		return status.Error(codes.InvalidArgument, "request metadata found in non-leading chunk")
	default:
		pr, pw := io.Pipe()
		// Whatever happens to the call, stop the reader's writes to the app.
		defer pr.CloseWithError(errCallDone)
		s.readers.Go(func() { readChunks(stream, first, second, pw) })
		req.Body = pr
	}
	resp, err := s.local.CallLocal(ctx, req)
	if err != nil {
		return callError(err)
	}
	defer resp.Body.Close()
	return sendResponse(stream, resp)
}

var errCallDone = errors.New("the call is over")

// inMemoryBody makes the data of a request that came in one message the
// request's in-memory body.
func inMemoryBody(req *invokemsg.Request, first *internalv1.InternalInvokeRequestStream) error {
	p := first.GetPayload()
	if p != nil && p.GetSeq() != 0 {
		return status.Errorf(codes.InvalidArgument, "invalid sequence number received: %d (expected: 0)", p.GetSeq())
	}
	m := req.Message
	data := p.GetData()
	if d := m.GetData().GetValue(); len(d) > 0 {
		// A caller may put data in the leading message itself.
		data = append(d, data...)
	}
	if m.GetData() == nil {
		m.Data = &anypb.Any{}
	}
	m.Data.Value = data
	req.ContentLength = int64(len(data))
	return nil
}

// readChunks copies the payload of the request stream into pw, checking
// the sequence numbers, until the caller closes its side. first and second
// are the messages already received.
func readChunks(stream grpc.ServerStream, first, second *internalv1.InternalInvokeRequestStream, pw *io.PipeWriter) {
	// A caller may put data in the leading message itself.
	if d := first.GetRequest().GetMessage().GetData().GetValue(); len(d) > 0 {
		if _, err := pw.Write(d); err != nil {
			return
		}
	}
	var expect uint64
	chunk := first
	for {
		if p := chunk.GetPayload(); p != nil {
			if p.GetSeq() != expect {
				pw.CloseWithError(fmt.Errorf("invalid sequence number received: %d (expected: %d)", p.GetSeq(), expect))
				return
			}
			expect++
			if len(p.GetData()) > 0 {
				if _, err := pw.Write(p.GetData()); err != nil {
					return // the app stopped reading
				}
			}
		}
		var err error
		switch chunk {
		case first:
			chunk = second
		case second:
			chunk = &internalv1.InternalInvokeRequestStream{}
			fallthrough
		default:
			chunk.Reset()
			err = stream.RecvMsg(chunk)
		}
		if errors.Is(err, io.EOF) {
			pw.Close()
			return
		}
		if err != nil {
			pw.CloseWithError(fmt.Errorf("error receiving message: %w", err))
			return
		}
		if chunk.GetRequest() != nil {
			pw.CloseWithError(errors.New("request metadata found in non-leading chunk"))
			return
		}
	}
}

// sendResponse sends the response header with the first chunk of the body,
// then the rest, chunk by chunk, as the app produces it.
func sendResponse(stream grpc.ServerStream, resp *invokemsg.Response) error {
	bufp := invokemsg.GetBuffer()
	defer invokemsg.PutBuffer(bufp)
	buf := *bufp
	msg := &internalv1.InternalInvokeResponseStream{Response: responseProto(resp, nil)}
	var seq uint64
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			msg.Payload = &commonv1.StreamPayload{Data: buf[:n], Seq: seq}
			seq++
		}
		if msg.GetResponse() != nil || msg.GetPayload() != nil {
			if err := stream.SendMsg(msg); err != nil {
				return err
			}
			msg.Response, msg.Payload = nil, nil
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			// Headers are gone already: end the stream with an error so the
			// caller sees a truncated body, not a short one.
			return status.Errorf(codes.Internal, "error reading the app's response: %v", rerr)
		}
	}
}
