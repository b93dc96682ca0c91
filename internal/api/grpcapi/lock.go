package grpcapi

import (
	"context"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
)

// TryLockAlpha1 takes a lock if it is free; success is false when it is
// held.
func (s *Server) TryLockAlpha1(ctx context.Context, in *runtimev1.TryLockRequest) (*runtimev1.TryLockResponse, error) {
	ok, err := s.Lock.TryLock(ctx, lock.TryLockRequest{
		Store:           in.GetStoreName(),
		ResourceID:      in.GetResourceId(),
		LockOwner:       in.GetLockOwner(),
		ExpiryInSeconds: in.GetExpiryInSeconds(),
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.TryLockResponse{Success: ok}, nil
}

// UnlockAlpha1 releases a lock held by the caller and reports Dapr's status.
func (s *Server) UnlockAlpha1(ctx context.Context, in *runtimev1.UnlockRequest) (*runtimev1.UnlockResponse, error) {
	st, err := s.Lock.Unlock(ctx, lock.UnlockRequest{
		Store:      in.GetStoreName(),
		ResourceID: in.GetResourceId(),
		LockOwner:  in.GetLockOwner(),
	})
	if err != nil {
		return nil, apierr.GRPC(err)
	}
	return &runtimev1.UnlockResponse{Status: runtimev1.UnlockResponse_Status(st)}, nil
}
