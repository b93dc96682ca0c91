package channel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// Invoke delivers a service invocation to the app and returns its answer;
// the caller closes the response body. HTTP apps get the request verb,
// path, query string, headers and body streamed; gRPC apps get
// AppCallback.OnInvoke with the InvokeRequest (its body read into memory,
// up to MaxBodySize). ctx bounds the whole call, body included: its
// deadline and cancellation reach the app.
//
// An app error (any HTTP status, any gRPC code) is a response, not an
// error; errors are failures to reach the app, requests an HTTP app cannot
// be given (gRPC status InvalidArgument, as daprd), or ErrAppUnhealthy at
// once while the health checks say the app is unhealthy.
func (a *App) Invoke(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error) {
	if !a.Healthy() {
		return nil, ErrAppUnhealthy
	}
	if a.GRPC != nil {
		return a.GRPC.invoke(ctx, req)
	}
	return a.HTTP.invoke(ctx, req)
}

func (h *HTTP) invoke(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error) {
	ext := req.Message.GetHttpExtension()
	if ext == nil {
		return nil, status.Error(codes.InvalidArgument, "missing HTTP extension field")
	}
	verb := ext.GetVerb()
	// net/http cannot send CONNECT requests to a path.
	if verb == commonv1.HTTPExtension_NONE || verb == commonv1.HTTPExtension_CONNECT {
		return nil, status.Error(codes.InvalidArgument, "invalid HTTP verb")
	}
	u, err := h.url(req.Message.GetMethod(), ext.GetQuerystring())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid method %q: %v", req.Message.GetMethod(), err)
	}
	body, length := req.Payload()
	if length < 0 {
		// A streamed body: its length travels as metadata when the caller
		// knew it.
		length = invokemsg.ContentLength(req.Metadata)
	}
	hreq, err := http.NewRequestWithContext(ctx, verb.String(), "", nil)
	if err != nil {
		return nil, err
	}
	hreq.URL = u
	hreq.Header = make(http.Header, len(req.Metadata)+2)
	switch {
	case length == 0:
		hreq.Body = http.NoBody
	case length > 0:
		hreq.Body, hreq.ContentLength = io.NopCloser(body), length
	default:
		hreq.Body, hreq.ContentLength = io.NopCloser(body), -1
	}
	invokemsg.ToHTTPHeader(req.Metadata, hreq.Header)
	if ct := req.ContentType(); ct != "" {
		hreq.Header["Content-Type"] = []string{ct}
	}
	resp, err := h.roundTrip(hreq)
	if err != nil {
		return nil, err
	}
	return &invokemsg.Response{
		Status:        &internalv1.Status{Code: int32(resp.StatusCode)},
		Headers:       invokemsg.FromHTTPHeader(resp.Header),
		ContentType:   resp.Header.Get("Content-Type"),
		Body:          resp.Body,
		ContentLength: resp.ContentLength,
	}, nil
}

// url builds the app URL for method (decoded, e.g. "orders/a b") and the
// raw query string, which is passed on unchanged. The path is escaped once
// here, so characters the caller escaped reach the app escaped.
func (h *HTTP) url(method, query string) (*url.URL, error) {
	if strings.ContainsFunc(query, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("the query string contains spaces or control characters")
	}
	u := *h.baseURL
	u.Path = "/" + strings.TrimPrefix(method, "/")
	u.RawQuery = query
	return &u, nil
}

// roundTrip sends hreq under the concurrency limit; the slot is held until
// the response body is closed.
func (h *HTTP) roundTrip(hreq *http.Request) (*http.Response, error) {
	if h.sem != nil {
		select {
		case h.sem <- struct{}{}:
		case <-hreq.Context().Done():
			return nil, hreq.Context().Err()
		}
	}
	resp, err := h.send(hreq)
	if err != nil {
		h.release()
		return nil, err
	}
	if h.sem != nil {
		resp.Body = &releaseBody{ReadCloser: resp.Body, release: h.release}
	}
	return resp, nil
}

func (g *GRPC) invoke(ctx context.Context, req *invokemsg.Request) (*invokemsg.Response, error) {
	msg := req.Message
	if req.Body != nil {
		data, err := invokemsg.ReadAll(req.Body, req.ContentLength, int64(g.maxBody))
		if err != nil {
			return nil, status.Errorf(codes.ResourceExhausted, "reading the request for the app: %v", err)
		}
		msg = &commonv1.InvokeRequest{
			Method:        msg.GetMethod(),
			ContentType:   msg.GetContentType(),
			HttpExtension: msg.GetHttpExtension(),
			Data:          &anypb.Any{TypeUrl: msg.GetData().GetTypeUrl(), Value: data},
		}
	}
	md := invokemsg.ToGRPC(req.Metadata, true)
	ctx = metadata.NewOutgoingContext(ctx, md)
	var header, trailer metadata.MD
	resp, err := g.Callback.OnInvoke(ctx, msg, grpc.Header(&header), grpc.Trailer(&trailer))
	out := &invokemsg.Response{
		Status:   &internalv1.Status{Code: int32(codes.OK)},
		Headers:  invokemsg.FromGRPC(header),
		Trailers: invokemsg.FromGRPC(trailer),
	}
	if err != nil {
		// Every gRPC error is the app's answer, as in daprd: an app that is
		// not listening answers Unavailable.
		st, ok := status.FromError(err)
		if !ok {
			return nil, err
		}
		p := st.Proto()
		out.Status = &internalv1.Status{Code: p.GetCode(), Message: p.GetMessage(), Details: p.GetDetails()}
	}
	data := resp.GetData().GetValue()
	out.ContentType = resp.GetContentType()
	out.DataTypeURL = resp.GetData().GetTypeUrl()
	out.Body = io.NopCloser(bytes.NewReader(data))
	out.ContentLength = int64(len(data))
	return out, nil
}
