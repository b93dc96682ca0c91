package grpcapi

import (
	"context"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/state"
)

func consistency(c commonv1.StateOptions_StateConsistency) string {
	switch c {
	case commonv1.StateOptions_CONSISTENCY_EVENTUAL:
		return "eventual"
	case commonv1.StateOptions_CONSISTENCY_STRONG:
		return "strong"
	}
	return ""
}

func concurrency(c commonv1.StateOptions_StateConcurrency) string {
	switch c {
	case commonv1.StateOptions_CONCURRENCY_FIRST_WRITE:
		return "first-write"
	case commonv1.StateOptions_CONCURRENCY_LAST_WRITE:
		return "last-write"
	}
	return ""
}

func options(o *commonv1.StateOptions) state.Options {
	if o == nil {
		return state.Options{}
	}
	return state.Options{Concurrency: concurrency(o.GetConcurrency()), Consistency: consistency(o.GetConsistency())}
}

func etag(e *commonv1.Etag) *string {
	if e == nil {
		return nil
	}
	v := e.GetValue()
	return &v
}

func saveItem(it *commonv1.StateItem) state.SaveItem {
	v := it.GetValue()
	if v == nil {
		v = []byte{}
	}
	return state.SaveItem{Key: it.GetKey(), Value: v, ETag: etag(it.GetEtag()), Metadata: it.GetMetadata(), Options: options(it.GetOptions())}
}

// GetState reads one key; a missing key is OK with empty data and etag.
func (s *Server) GetState(ctx context.Context, in *runtimev1.GetStateRequest) (*runtimev1.GetStateResponse, error) {
	item, err := s.State.Get(ctx, state.GetRequest{Store: in.GetStoreName(), Key: in.GetKey(), Consistency: consistency(in.GetConsistency()), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.GetStateResponse{Data: item.Data, Etag: item.ETag, Metadata: item.Metadata}, nil
}

// GetBulkState reads many keys; per-key failures are in the items.
func (s *Server) GetBulkState(ctx context.Context, in *runtimev1.GetBulkStateRequest) (*runtimev1.GetBulkStateResponse, error) {
	items, err := s.State.BulkGet(ctx, state.BulkGetRequest{Store: in.GetStoreName(), Keys: in.GetKeys(), Parallelism: int(in.GetParallelism()), Metadata: in.GetMetadata()})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	out := &runtimev1.GetBulkStateResponse{Items: make([]*runtimev1.BulkStateItem, len(items))}
	for i, it := range items {
		out.Items[i] = &runtimev1.BulkStateItem{Key: it.Key, Data: it.Data, Etag: it.ETag, Error: it.Error, Metadata: it.Metadata}
	}
	return out, nil
}

// SaveState writes one or more keys.
func (s *Server) SaveState(ctx context.Context, in *runtimev1.SaveStateRequest) (*emptypb.Empty, error) {
	items := make([]state.SaveItem, len(in.GetStates()))
	for i, it := range in.GetStates() {
		items[i] = saveItem(it)
	}
	if err := s.State.Save(ctx, in.GetStoreName(), items); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// DeleteState removes one key.
func (s *Server) DeleteState(ctx context.Context, in *runtimev1.DeleteStateRequest) (*emptypb.Empty, error) {
	err := s.State.Delete(ctx, state.DeleteRequest{Store: in.GetStoreName(), Key: in.GetKey(), ETag: etag(in.GetEtag()), Metadata: in.GetMetadata(), Options: options(in.GetOptions())})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// DeleteBulkState removes several keys.
func (s *Server) DeleteBulkState(ctx context.Context, in *runtimev1.DeleteBulkStateRequest) (*emptypb.Empty, error) {
	reqs := make([]state.DeleteRequest, len(in.GetStates()))
	for i, it := range in.GetStates() {
		reqs[i] = state.DeleteRequest{Store: in.GetStoreName(), Key: it.GetKey(), ETag: etag(it.GetEtag()), Metadata: it.GetMetadata(), Options: options(it.GetOptions())}
	}
	if err := s.State.DeleteBulk(ctx, in.GetStoreName(), reqs); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}

// ExecuteStateTransaction applies operations atomically.
func (s *Server) ExecuteStateTransaction(ctx context.Context, in *runtimev1.ExecuteStateTransactionRequest) (*emptypb.Empty, error) {
	ops := make([]state.Operation, len(in.GetOperations()))
	for i, op := range in.GetOperations() {
		if op.GetRequest() == nil {
			return nil, apierr.GRPC(apierr.MalformedRequest.New("operation %d has no request", i))
		}
		ops[i] = state.Operation{Type: op.GetOperationType(), Item: saveItem(op.GetRequest())}
	}
	if err := s.State.Transact(ctx, in.GetStoreName(), ops, in.GetMetadata()); err != nil {
		return nil, apierr.GRPC(err)
	}
	return empty, nil
}
