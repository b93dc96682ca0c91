package grpcapi

import (
	"context"
	"errors"
	"strconv"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// InvokeService calls a method of another app (or this one) with the whole
// body in one message. For an HTTP app, http_extension.verb must name an
// HTTP verb; its status comes back as daprd maps it: 2xx is OK with the
// data, anything else a gRPC error (404 NotFound, 500 Unknown, …) whose
// ErrorInfo holds the HTTP code, and the header dapr-http-status holds it
// either way. A gRPC app's status, headers and trailers pass through.
func (s *Server) InvokeService(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	if s.Invoke == nil {
		return nil, apierr.GRPC(apierr.DirectInvoke.New("invoke API is not ready"))
	}
	msg := in.GetMessage()
	if msg == nil {
		return nil, apierr.GRPC(apierr.BadRequest.New("invalid request: message is required"))
	}
	md, _ := metadata.FromIncomingContext(ctx)
	imd := invokemsg.FromGRPC(md)
	delete(imd, invokemsg.APITokenHeader)
	delete(imd, invokemsg.AppIDHeader)
	resp, err := s.Invoke.Invoke(ctx, in.GetId(), &invokemsg.Request{Message: msg, Metadata: imd})
	if err != nil {
		return nil, invokeError(ctx, err)
	}
	defer resp.Close()
	data, err := invokemsg.ReadAll(resp.Body, resp.ContentLength, s.MaxBodySize)
	if err != nil {
		return nil, invokeError(ctx, apierr.DirectInvoke.Wrap(err, "failed to invoke, id: %s, err", in.GetId()))
	}
	out := &commonv1.InvokeResponse{ContentType: resp.ContentType, Data: &anypb.Any{TypeUrl: resp.DataTypeURL, Value: data}}
	header := invokemsg.ToGRPC(resp.Headers, true)
	code := resp.Status.GetCode()
	if resp.IsHTTP() {
		header.Set(invokemsg.HTTPStatusHeader, strconv.Itoa(int(code)))
		_ = grpc.SetHeader(ctx, header)
		if err := invokemsg.ErrorFromHTTPStatus(int(code), data); err != nil {
			return nil, err
		}
		return out, nil
	}
	_ = grpc.SetHeader(ctx, header)
	if t := invokemsg.ToGRPC(resp.Trailers, false); len(t) > 0 {
		_ = grpc.SetTrailer(ctx, t)
	}
	if codes.Code(code) != codes.OK {
		return nil, status.ErrorProto(&spb.Status{Code: code, Message: resp.Status.GetMessage(), Details: resp.Status.GetDetails()})
	}
	return out, nil
}

// invokeError is the status of a failed invocation: the caller's own
// cancellation or deadline as such (whichever hop noticed it first), else
// err's.
func invokeError(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	if calleeDeadline(ctx, err) {
		return status.Error(codes.DeadlineExceeded, context.DeadlineExceeded.Error())
	}
	return apierr.GRPC(err)
}

// calleeDeadline reports whether err is the caller's own deadline, passed
// on with the call and hit first by a hop further on (its clock fires a
// moment before ours): the caller gets DeadlineExceeded either way, not
// an invocation error that depends on which side noticed first.
func calleeDeadline(ctx context.Context, err error) bool {
	if _, ok := ctx.Deadline(); !ok {
		return false
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if errors.Is(e, context.DeadlineExceeded) {
			return true
		}
		if s, ok := e.(interface{ GRPCStatus() *status.Status }); ok && s.GRPCStatus().Code() == codes.DeadlineExceeded {
			return true
		}
	}
	return false
}
