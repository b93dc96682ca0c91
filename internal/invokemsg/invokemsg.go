// Package invokemsg holds a service invocation as it travels: caller → its
// sidecar (HTTP API or gRPC InvokeService) → the callee's sidecar (internal
// gRPC, dapr.proto.internals.v1.ServiceInvocation) → the callee app (HTTP or
// gRPC AppCallback) and back. Every hop streams the body, so the types carry
// an io.Reader instead of bytes, next to Dapr's own proto messages for
// everything else; they are shared by the invocation block, the app channel
// and the transports so that no hop converts more than it must.
//
// It also converts between HTTP headers, gRPC metadata and Dapr's internal
// metadata with daprd's rules (meta.go), so that a daprd and a Mecha sidecar
// deliver the same headers to an app.
package invokemsg

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
)

// MD is Dapr's internal metadata: HTTP headers or gRPC metadata of the
// caller (requests) or the app (responses).
type MD = map[string]*internalv1.ListStringValue

// ChunkSize is the payload size of one streamed message between sidecars,
// and of the buffers bodies are copied through.
const ChunkSize = 64 << 10

// bufPool holds ChunkSize buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// GetBuffer returns a ChunkSize buffer from a pool; PutBuffer returns it.
func GetBuffer() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuffer returns b to the pool.
func PutBuffer(b *[]byte) { bufPool.Put(b) }

// ProtobufContentType is the content type of a body whose Any carries a
// type URL, as daprd reports it.
const ProtobufContentType = "application/x-protobuf"

// Request is one invocation on its way to an app.
type Request struct {
	// Message holds the method, content type, HTTP extension (verb and
	// query string) and, for callers that have the body in memory, the
	// data. Method is decoded, without a leading slash.
	Message *commonv1.InvokeRequest
	// Metadata carries the caller's headers or gRPC metadata and the
	// sidecars' additions (dapr-caller-app-id, …).
	Metadata MD
	// Body, when not nil, is the payload and Message.Data.Value is unused.
	Body io.Reader
	// ContentLength is Body's length, or -1 when unknown.
	ContentLength int64
}

// Payload returns the body and its length (-1 when unknown).
func (r *Request) Payload() (io.Reader, int64) {
	if r.Body != nil {
		return r.Body, r.ContentLength
	}
	d := r.Message.GetData().GetValue()
	return bytes.NewReader(d), int64(len(d))
}

// InMemory reports whether the whole body is in Message.Data, so that the
// request can be sent again.
func (r *Request) InMemory() bool { return r.Body == nil }

// Verb is the HTTP verb for HTTP apps (NONE when absent).
func (r *Request) Verb() commonv1.HTTPExtension_Verb {
	return r.Message.GetHttpExtension().GetVerb()
}

// ContentType is the body's content type as the app sees it: protobuf when
// the data carries a type URL, as in daprd.
func (r *Request) ContentType() string {
	if r.Message.GetData().GetTypeUrl() != "" {
		return ProtobufContentType
	}
	return r.Message.GetContentType()
}

// Response is an app's answer on its way back to the caller.
type Response struct {
	// Status.Code is the app's HTTP status (>= 100) for HTTP apps and its
	// gRPC code for gRPC apps, with message and details.
	Status *internalv1.Status
	// Headers and Trailers are the app's response headers / metadata.
	Headers  MD
	Trailers MD
	// ContentType and DataTypeURL describe Body: the app's content type,
	// and the type URL of a gRPC app's Any (an HTTP caller then gets
	// application/x-protobuf).
	ContentType string
	DataTypeURL string
	// Body is the payload; never nil. The receiver closes it, which ends
	// the call and releases its resources.
	Body io.ReadCloser
	// ContentLength is Body's length, or -1 when unknown.
	ContentLength int64
}

// IsHTTP reports whether the status is an HTTP status (the app speaks
// HTTP) rather than a gRPC code.
func (r *Response) IsHTTP() bool { return r.Status.GetCode() >= 100 }

// Close closes the body.
func (r *Response) Close() error { return r.Body.Close() }

// BytesBody is a body whose bytes are in memory: its length is known and
// it is copied without an intermediate buffer.
func BytesBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// ReadAll reads r up to limit bytes; more is ErrTooLarge.
func ReadAll(r io.Reader, length, limit int64) ([]byte, error) {
	if length > limit {
		return nil, &TooLargeError{Limit: limit}
	}
	var b []byte
	if length >= 0 {
		b = make([]byte, 0, length+1)
	}
	buf := bytes.NewBuffer(b)
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, &TooLargeError{Limit: limit}
	}
	return buf.Bytes(), nil
}

// TooLargeError reports a body above the size limit.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return "body is larger than the limit of " + strconv.FormatInt(e.Limit, 10) + " bytes (raise it with --max-body-size)"
}

// ContentLength returns the content-length in md (any case), or -1.
func ContentLength(md MD) int64 {
	for k, v := range md {
		if len(k) == len("content-length") && strings.EqualFold(k, "content-length") && len(v.GetValues()) > 0 {
			n, err := strconv.ParseInt(strings.TrimSpace(v.GetValues()[0]), 10, 64)
			if err != nil || n < 0 {
				return -1
			}
			return n
		}
	}
	return -1
}
