package security

import (
	"context"
	"fmt"
	"sync"

	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// PeerID returns the SPIFFE ID of the other end of a gRPC call served or
// made over mutual TLS; false without TLS or without a valid SPIFFE ID.
// The certificate was verified during the handshake (the configurations
// of this package refuse any other), so this only reads it.
func PeerID(ctx context.Context) (spiffe.ID, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return spiffe.ID{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return spiffe.ID{}, false
	}
	id, err := spiffe.FromCertificate(info.State.PeerCertificates[0])
	if err != nil {
		return spiffe.ID{}, false
	}
	return id, true
}

// checkCallee is a client stream interceptor that makes sure the sidecar
// a call reached holds the identity of the app the call is for, before
// anything but headers is sent to it: for proxied gRPC calls the app in
// dapr-callee-app-id, for invocations (CallLocalStream) the app in the
// request's destination-app-id, read when the request is sent. A sidecar
// that took over another's address, even with a certificate of ours,
// receives nothing. Calls that name no target (actors) are not checked.
// The namespace is not checked: the invocation metadata does not carry the
// callee's.
func checkCallee(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if v := metadata.ValueFromOutgoingContext(ctx, invokemsg.CalleeAppIDHeader); len(v) > 0 && v[0] != "" {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, err
		}
		if err := calleeIs(cs.Context(), v[0]); err != nil {
			return nil, err
		}
		return cs, nil
	}
	if method != internalv1.ServiceInvocation_CallLocalStream_FullMethodName {
		return streamer(ctx, desc, cc, method, opts...)
	}
	// The stream's own context, to end it if the check fails; it ends
	// with the caller's at the latest.
	sctx, cancel := context.WithCancel(ctx)
	cs, err := streamer(sctx, desc, cc, method, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	return &calleeStream{ClientStream: cs, cancel: cancel}, nil
}

// calleeStream checks the callee when the first request message, which
// names it, is sent.
// The stream is used by one sender and one receiver goroutine, so err is
// guarded.
type calleeStream struct {
	grpc.ClientStream
	checked bool // sender only
	cancel  context.CancelFunc
	mu      sync.Mutex
	err     error
}

func (s *calleeStream) SendMsg(m any) error {
	if !s.checked {
		s.checked = true
		if req, ok := m.(*internalv1.InternalInvokeRequestStream); ok {
			if app := invokemsg.Get(req.GetRequest().GetMetadata(), invokemsg.DestinationAppID); app != "" {
				if err := calleeIs(s.Context(), app); err != nil {
					// Nothing is sent; the receiver gets the error instead
					// of waiting for an answer to a request never made.
					s.mu.Lock()
					s.err = err
					s.mu.Unlock()
					s.cancel()
					return err
				}
			}
		}
	}
	return s.ClientStream.SendMsg(m)
}

func (s *calleeStream) RecvMsg(m any) error {
	if err := s.failed(); err != nil {
		return err
	}
	err := s.ClientStream.RecvMsg(m)
	if ferr := s.failed(); ferr != nil {
		return ferr
	}
	return err
}

func (s *calleeStream) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// calleeIs checks that the peer of a call is app.
func calleeIs(ctx context.Context, app string) error {
	id, ok := PeerID(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "the target sidecar presented no SPIFFE identity")
	}
	if id.AppID != app {
		return status.Error(codes.Unauthenticated, fmt.Sprintf("the target sidecar is %s, not app %s", id, app))
	}
	return nil
}
