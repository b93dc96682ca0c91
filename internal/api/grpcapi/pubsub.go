package grpcapi

import (
	"context"
	"errors"
	"io"
	"strings"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/pubsub"
)

// incomingTrace is the caller's W3C trace context from the call metadata.
func incomingTrace(ctx context.Context) (parent, state string) {
	md, _ := metadata.FromIncomingContext(ctx)
	return strings.Join(md.Get("traceparent"), ","), strings.Join(md.Get("tracestate"), ",")
}

func (s *Server) pubsubNotConfigured(name string) error {
	return apierr.GRPC(apierr.PubsubNotConfigured.New("pubsub %s is not configured", name))
}

// PublishEvent publishes one event.
func (s *Server) PublishEvent(ctx context.Context, in *runtimev1.PublishEventRequest) (*emptypb.Empty, error) {
	if s.PubSub == nil {
		return nil, s.pubsubNotConfigured(in.GetPubsubName())
	}
	parent, state := incomingTrace(ctx)
	err := s.PubSub.Publish(ctx, pubsub.PublishRequest{
		PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Data: in.GetData(),
		ContentType: in.GetDataContentType(), Metadata: in.GetMetadata(),
		TraceParent: parent, TraceState: state,
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// BulkPublishEvent publishes a batch. Entries a broker reports as failed
// are listed in the response; a failed call is an error status, as daprd.
func (s *Server) BulkPublishEvent(ctx context.Context, in *runtimev1.BulkPublishRequest) (*runtimev1.BulkPublishResponse, error) {
	if s.PubSub == nil {
		return nil, s.pubsubNotConfigured(in.GetPubsubName())
	}
	entries := make([]pubsub.BulkEntry, len(in.GetEntries()))
	for i, e := range in.GetEntries() {
		entries[i] = pubsub.BulkEntry{EntryID: e.GetEntryId(), Event: e.GetEvent(), ContentType: e.GetContentType(), Metadata: e.GetMetadata()}
	}
	parent, state := incomingTrace(ctx)
	res, err := s.PubSub.BulkPublish(ctx, pubsub.BulkPublishRequest{
		PubsubName: in.GetPubsubName(), Topic: in.GetTopic(), Entries: entries, Metadata: in.GetMetadata(),
		TraceParent: parent, TraceState: state,
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	out := &runtimev1.BulkPublishResponse{FailedEntries: make([]*runtimev1.BulkPublishResponseFailedEntry, len(res.FailedEntries))}
	for i, f := range res.FailedEntries {
		out.FailedEntries[i] = &runtimev1.BulkPublishResponseFailedEntry{EntryId: f.EntryID, Error: f.Error}
	}
	return out, nil
}

// BulkPublishEventAlpha1 is BulkPublishEvent.
func (s *Server) BulkPublishEventAlpha1(ctx context.Context, in *runtimev1.BulkPublishRequest) (*runtimev1.BulkPublishResponse, error) {
	return s.BulkPublishEvent(ctx, in)
}

// SubscribeTopicEventsAlpha1 is a streaming subscription: the client's
// first message is the initial request, answered with an initial
// response; then the sidecar sends events and the client answers each
// with event_processed{id, status}. The subscription ends with the stream
// (the client closes it, or the sidecar shuts down).
func (s *Server) SubscribeTopicEventsAlpha1(stream runtimev1.Dapr_SubscribeTopicEventsAlpha1Server) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	req := first.GetInitialRequest()
	// daprd answers these with plain errors (gRPC Unknown).
	switch {
	case req == nil:
		return status.Error(codes.Unknown, "initial request is required")
	case req.GetPubsubName() == "":
		return status.Error(codes.Unknown, "pubsubName is required")
	case req.GetTopic() == "":
		return status.Error(codes.Unknown, "topic is required")
	case s.PubSub == nil:
		return s.pubsubNotConfigured(req.GetPubsubName())
	}
	sub, err := s.PubSub.SubscribeStream(ctx, pubsub.StreamRequest{
		PubsubName: req.GetPubsubName(), Topic: req.GetTopic(), Metadata: req.GetMetadata(), DeadLetterTopic: req.GetDeadLetterTopic(),
	})
	if err != nil {
		var ae *apierr.Error
		if errors.As(err, &ae) {
			return apierr.GRPC(err)
		}
		return status.Error(codes.Unknown, err.Error())
	}
	defer sub.Close()
	if err := stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
		SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_InitialResponse{
			InitialResponse: &runtimev1.SubscribeTopicEventsResponseInitialAlpha1{},
		},
	}); err != nil {
		return err
	}
	// The receiving goroutine ends when the stream does: Recv fails once
	// this handler has returned.
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			p := m.GetEventProcessed()
			if p == nil {
				recvErr <- status.Error(codes.Unknown, "duplicate initial request received")
				return
			}
			sub.Processed(p.GetId(), p.GetStatus().GetStatus())
		}
	}()
	for {
		select {
		case ev := <-sub.Events():
			if err := stream.Send(&runtimev1.SubscribeTopicEventsResponseAlpha1{
				SubscribeTopicEventsResponseType: &runtimev1.SubscribeTopicEventsResponseAlpha1_EventMessage{EventMessage: ev},
			}); err != nil {
				return err
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-sub.Done():
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
