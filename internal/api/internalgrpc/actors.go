package internalgrpc

import (
	"context"
	"errors"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/telemetry/tracing"
)

// ActorHost is the actor runtime as the internal server needs it.
type ActorHost interface {
	// CallLocal runs a forwarded actor call on this host, or answers
	// actors.ErrActorMoved when this host does not own the actor.
	CallLocal(ctx context.Context, req *actors.InvokeRequest) (*actors.InvokeResponse, error)
	// SyncReminder reloads a reminder another host changed.
	SyncReminder(ctx context.Context, ref actors.ReminderRef) error
}

// SetActors makes the server answer CallActor and CallActorReminder; call
// it before the server serves.
func (s *Server) SetActors(a ActorHost) { s.actors = a }

// movedMessage is daprd's answer when the callee's table says another host
// owns the actor; daprd callers retry on exactly this text.
const movedMessage = "error invoke actor method: remote actor moved"

// reminderSyncKey marks a CallActorReminder that asks the owner to reload
// a reminder from the store (Mecha's use), rather than to fire it.
const reminderSyncKey = "mecha-reminder-sync"

// CallActor runs an actor method on this host for another sidecar. The app
// status travels in the response; failures are gRPC errors with daprd's
// messages.
func (s *Server) CallActor(ctx context.Context, in *internalv1.InternalInvokeRequest) (*internalv1.InternalInvokeResponse, error) {
	if s.actors == nil {
		return nil, status.Error(codes.Unimplemented, "actors are not enabled on this sidecar")
	}
	msg := in.GetMessage()
	if msg == nil || in.GetActor() == nil {
		return nil, status.Error(codes.InvalidArgument, "parsing InternalInvokeRequest error: the actor or the message is missing")
	}
	req := &actors.InvokeRequest{
		ActorType:   in.GetActor().GetActorType(),
		ActorID:     in.GetActor().GetActorId(),
		Method:      msg.GetMethod(),
		Data:        msg.GetData().GetValue(),
		ContentType: msg.GetContentType(),
		Metadata:    in.GetMetadata(),
	}
	ctx, span := s.tracing.StartCallActor(ctx, internalv1.ServiceInvocation_CallActor_FullMethodName, req.ActorType, req.ActorID, req.Method, req.Metadata)
	resp, err := s.actors.CallLocal(ctx, req)
	tracing.End(span, err)
	if err != nil {
		return nil, actorStatus(err)
	}
	return &internalv1.InternalInvokeResponse{
		Status:  &internalv1.Status{Code: int32(resp.Status)},
		Headers: resp.Headers,
		Message: &commonv1.InvokeResponse{ContentType: resp.ContentType, Data: &anypb.Any{Value: resp.Data}},
	}, nil
}

// CallActorReminder asks this host to reload a reminder of an actor it
// owns (another host created, changed or deleted it).
func (s *Server) CallActorReminder(ctx context.Context, in *internalv1.Reminder) (*emptypb.Empty, error) {
	if s.actors == nil {
		return nil, status.Error(codes.Unimplemented, "actors are not enabled on this sidecar")
	}
	ref := actors.ReminderRef{ActorType: in.GetActorType(), ActorID: in.GetActorId(), Name: in.GetName()}
	if err := s.actors.SyncReminder(ctx, ref); err != nil {
		return nil, actorStatus(err)
	}
	return &emptypb.Empty{}, nil
}

func actorStatus(err error) error {
	switch {
	case errors.Is(err, actors.ErrActorMoved):
		return status.Error(codes.Internal, movedMessage)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return apierr.GRPC(err)
}

var _ actors.Remote = (*Client)(nil)

// CallActor forwards an actor call to the sidecar at addr. Answers that
// call for a retry with a newer table (the callee does not own the actor,
// it is between tables, or it cannot be reached) are marked
// actors.ErrActorMoved or actors.ErrUnreachable. With tracing, each
// forward is a client span whose context the callee continues.
func (c *Client) CallActor(ctx context.Context, addr string, req *actors.InvokeRequest) (_ *actors.InvokeResponse, err error) {
	ctx, span := tracing.StartActorCall(ctx, req.ActorType, req.ActorID, req.Method, addr)
	defer func() { tracing.End(span, err) }()
	tracing.InjectMD(ctx, req.Metadata)
	ctx = tracing.OutgoingGRPC(ctx)
	cn, err := c.acquire(addr)
	if err != nil {
		return nil, &markedError{err: err, mark: actors.ErrUnreachable}
	}
	defer cn.inflight.Add(-1)
	in := &internalv1.InternalInvokeRequest{
		Ver:      internalv1.APIVersion_V1,
		Metadata: req.Metadata,
		Message: &commonv1.InvokeRequest{
			Method:        req.Method,
			ContentType:   req.ContentType,
			Data:          &anypb.Any{Value: req.Data},
			HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_PUT},
		},
		Actor: &internalv1.Actor{ActorType: req.ActorType, ActorId: req.ActorID},
	}
	out, err := cn.client.CallActor(ctx, in)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, actorCallError(cn, err)
	}
	resp := &actors.InvokeResponse{
		Status:      int(out.GetStatus().GetCode()),
		Headers:     out.GetHeaders(),
		ContentType: out.GetMessage().GetContentType(),
		Data:        out.GetMessage().GetData().GetValue(),
	}
	if resp.Status == 0 {
		resp.Status = 200
	}
	return resp, nil
}

// SyncReminder tells the owner of an actor to reload one of its reminders.
func (c *Client) SyncReminder(ctx context.Context, addr string, ref actors.ReminderRef) error {
	cn, err := c.acquire(addr)
	if err != nil {
		return &markedError{err: err, mark: actors.ErrUnreachable}
	}
	defer cn.inflight.Add(-1)
	ctx = metadata.AppendToOutgoingContext(ctx, reminderSyncKey, "true")
	_, err = cn.client.CallActorReminder(ctx, &internalv1.Reminder{ActorType: ref.ActorType, ActorId: ref.ActorID, Name: ref.Name})
	if err != nil {
		return actorCallError(cn, err)
	}
	return nil
}

// actorCallError sorts a failed call into retriable and final ones.
func actorCallError(cn *conn, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		cn.cc.ResetConnectBackoff()
		return &markedError{err: err, mark: actors.ErrUnreachable}
	case codes.Canceled, codes.DeadlineExceeded:
		return err
	case codes.Internal:
		if strings.Contains(st.Message(), "remote actor moved") || strings.HasSuffix(st.Message(), "placement is disseminating") {
			return &markedError{err: err, mark: actors.ErrActorMoved}
		}
	}
	return &actors.RemoteError{Message: st.Message()}
}
