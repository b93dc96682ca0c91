package grpcapi

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

func (s *Server) actorRuntime() (*actors.Block, error) {
	if s.Actors == nil {
		return nil, apierr.GRPC(apierr.ActorRuntimeNotFound.New("the actor runtime is not configured"))
	}
	return s.Actors, nil
}

// InvokeActor calls an actor method. An answer the app marked as an actor
// error (X-DaprErrorResponseHeader) is returned as data, as daprd does.
func (s *Server) InvokeActor(ctx context.Context, in *runtimev1.InvokeActorRequest) (*runtimev1.InvokeActorResponse, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	md := make(invokemsg.MD, len(in.GetMetadata()))
	var ct string
	for k, v := range in.GetMetadata() {
		invokemsg.Set(md, k, v)
		if strings.EqualFold(k, "content-type") {
			ct = v
		}
	}
	resp, err := ab.Invoke(ctx, &actors.InvokeRequest{
		ActorType: in.GetActorType(), ActorID: in.GetActorId(), Method: in.GetMethod(),
		Data: in.GetData(), ContentType: ct, Metadata: md,
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.InvokeActorResponse{Data: resp.Data}, nil
}

// GetActorState reads one key of an actor's state; a missing key is empty
// data.
func (s *Server) GetActorState(ctx context.Context, in *runtimev1.GetActorStateRequest) (*runtimev1.GetActorStateResponse, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	item, err := ab.GetState(ctx, in.GetActorType(), in.GetActorId(), in.GetKey())
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.GetActorStateResponse{Data: item.Data, Metadata: item.Metadata}, nil
}

// ExecuteActorStateTransaction writes an actor's state atomically; values
// are stored as the Any's bytes.
func (s *Server) ExecuteActorStateTransaction(ctx context.Context, in *runtimev1.ExecuteActorStateTransactionRequest) (*emptypb.Empty, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	ops := make([]actors.StateOperation, 0, len(in.GetOperations()))
	for _, o := range in.GetOperations() {
		op := actors.StateOperation{Operation: o.GetOperationType(), Key: o.GetKey(), Metadata: o.GetMetadata()}
		if strings.EqualFold(op.Operation, "upsert") {
			op.Value = o.GetValue().GetValue()
		}
		ops = append(ops, op)
	}
	if err := ab.TransactState(ctx, in.GetActorType(), in.GetActorId(), ops); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// grpcData is how daprd keeps data that came as gRPC bytes: as a JSON
// string (base64), so that callbacks carry JSON either way.
func grpcData(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	j, _ := json.Marshal(b)
	return j
}

// RegisterActorReminder registers a reminder.
func (s *Server) RegisterActorReminder(ctx context.Context, in *runtimev1.RegisterActorReminderRequest) (*emptypb.Empty, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	err = ab.CreateReminder(ctx, actors.ReminderRequest{
		ActorType: in.GetActorType(), ActorID: in.GetActorId(), Name: in.GetName(),
		Data: grpcData(in.GetData()), DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(),
		Overwrite: in.Overwrite,
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// UnregisterActorReminder deletes a reminder.
func (s *Server) UnregisterActorReminder(ctx context.Context, in *runtimev1.UnregisterActorReminderRequest) (*emptypb.Empty, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	if err := ab.DeleteReminder(ctx, in.GetActorType(), in.GetActorId(), in.GetName()); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// GetActorReminder reads a reminder; its data comes back as a BytesValue
// of the stored JSON, as daprd answers.
func (s *Server) GetActorReminder(ctx context.Context, in *runtimev1.GetActorReminderRequest) (*runtimev1.GetActorReminderResponse, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	rem, err := ab.GetReminder(ctx, in.GetActorType(), in.GetActorId(), in.GetName())
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	out := &runtimev1.GetActorReminderResponse{ActorType: rem.ActorType, ActorId: rem.ActorID}
	if rem.DueTime != "" {
		out.DueTime = &rem.DueTime
	}
	if rem.Period != "" {
		out.Period = &rem.Period
	}
	if !rem.Expiration.IsZero() {
		ttl := rem.Expiration.Format(time.RFC3339Nano)
		out.Ttl = &ttl
	}
	if len(rem.Data) > 0 {
		if out.Data, err = anypb.New(wrapperspb.Bytes(rem.Data)); err != nil {
			return nil, apierr.GRPC(apierr.ActorReminderGet.Wrap(err, "error getting actor reminder"))
		}
	}
	return out, nil
}

// RegisterActorTimer registers a timer of an actor hosted here.
func (s *Server) RegisterActorTimer(ctx context.Context, in *runtimev1.RegisterActorTimerRequest) (*emptypb.Empty, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	err = ab.CreateTimer(ctx, actors.TimerRequest{
		ActorType: in.GetActorType(), ActorID: in.GetActorId(), Name: in.GetName(),
		DueTime: in.GetDueTime(), Period: in.GetPeriod(), TTL: in.GetTtl(), Callback: in.GetCallback(),
		Data: grpcData(in.GetData()),
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// UnregisterActorTimer deletes a timer.
func (s *Server) UnregisterActorTimer(ctx context.Context, in *runtimev1.UnregisterActorTimerRequest) (*emptypb.Empty, error) {
	ab, err := s.actorRuntime()
	if err != nil {
		return nil, err
	}
	if err := ab.DeleteTimer(ctx, in.GetActorType(), in.GetActorId(), in.GetName()); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}
