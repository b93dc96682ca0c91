package grpcproxy

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pump copies one call both ways between the caller (ss) and the callee
// (cs) until the callee ends it, and returns the status to end the
// caller's call with: the callee's, or the reason the caller's side
// failed. cancel ends cs; it runs before pump returns.
//
// The caller's messages go up from a goroutine, the callee's come down on
// this one. When the callee ends the call while the caller is still
// sending (a client stream answered early), that goroutine outlives pump
// by the moment gRPC takes to close the caller's stream; Close waits for
// it.
func (p *Proxy) pump(ss grpc.ServerStream, cs grpc.ClientStream, cancel context.CancelFunc) error {
	defer cancel()
	up := make(chan error, 1)
	if !p.start(func() {
		err := sendUp(ss, cs)
		up <- err
		if err != nil {
			cancel() // the callee must not wait for the rest
		}
	}) {
		return status.Error(codes.Unavailable, "failed to proxy request: the sidecar is shutting down")
	}
	err := recvDown(ss, cs)
	if err == nil {
		return nil
	}
	// The callee's side ended with an error. When the caller's side failed
	// first (a message over the size limit), that cancellation is the
	// consequence and the caller's error the answer.
	select {
	case uerr := <-up:
		if uerr != nil && ss.Context().Err() == nil {
			if _, ok := status.FromError(uerr); ok {
				return uerr
			}
			return status.Errorf(codes.Internal, "failed proxying client-to-server: %v", uerr)
		}
	default:
	}
	return err
}

// sendUp copies the caller's messages to the callee, then closes the
// callee's receiving side; it returns an error when the call must stop.
func sendUp(ss grpc.ServerStream, cs grpc.ClientStream) error {
	f := getFrame()
	defer putFrame(f)
	for {
		if err := ss.RecvMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return cs.CloseSend()
			}
			return err
		}
		if err := cs.SendMsg(f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the callee ended the call; recvDown reports how
			}
			return err
		}
	}
}

// recvDown copies the callee's header, messages and trailer to the caller
// and returns the callee's status.
func recvDown(ss grpc.ServerStream, cs grpc.ClientStream) error {
	// Header waits for the callee's header, so that a caller blocked on it
	// (a stream before its first message) gets it as soon as it exists. It
	// is nil when the callee answered with a status only; RecvMsg reports
	// it.
	if md, err := cs.Header(); err == nil && md != nil {
		if err := ss.SendHeader(md); err != nil {
			return err
		}
	}
	f := getFrame()
	defer putFrame(f)
	for {
		if err := cs.RecvMsg(f); err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}
