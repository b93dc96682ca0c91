package invokemsg

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func md(kv ...string) MD {
	out := MD{}
	for i := 0; i+1 < len(kv); i += 2 {
		Append(out, kv[i], kv[i+1])
	}
	return out
}

func TestToHTTPHeader(t *testing.T) {
	in := md(
		"X-Custom", "1", "X-Custom", "2",
		"Connection", "keep-alive, X-Hop", "X-Hop", "gone", "Keep-Alive", "timeout=5", "Transfer-Encoding", "chunked",
		"Content-Type", "text/plain", "Content-Length", "12", "Host", "h",
		"destination-app-id", "b", "dapr-caller-app-id", "a",
		":authority", "sidecar", "grpc-timeout", "1S", "user-agent", "grpc-go", "thing-bin", "AAE=",
		"traceparent", "00-aa-bb-01", "tracestate", "k=v", "baggage", "b=1",
		"Bad Name", "x", "X-Bad-Value", "a\nb",
	)
	h := http.Header{}
	ToHTTPHeader(in, h)
	want := http.Header{
		"X-Custom":           {"1", "2"},
		"Dapr-Caller-App-Id": {"a"},
		"Dapr-Authority":     {"sidecar"},
		"Dapr-Grpc-Timeout":  {"1S"},
		"User-Agent":         {"grpc-go"},
		"Traceparent":        {"00-aa-bb-01"},
		"Tracestate":         {"k=v"},
		"Baggage":            {"b=1"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got  %v\nwant %v", h, want)
	}
}

func TestToGRPC(t *testing.T) {
	in := md("Content-Type", "application/json", "Accept", "*/*", "X-Custom", "1", "Connection", "close",
		"destination-app-id", "b", "raw-bin", "AAE=", "content-length", "3", "X-Bad", "\x01", "traceparent", "00-aa-bb-01")
	got := ToGRPC(in, true)
	want := metadata.MD{
		"dapr-content-type": {"application/json"},
		"dapr-accept":       {"*/*"},
		"x-custom":          {"1"},
		"dapr-connection":   {"close"},
		"raw-bin":           {"\x00\x01"},
		"traceparent":       {"00-aa-bb-01"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	// Without HTTP conversion, HTTP/2 connection headers are dropped.
	if got := ToGRPC(md("connection", "x", "x-a", "1"), false); !reflect.DeepEqual(got, metadata.MD{"x-a": {"1"}}) {
		t.Fatalf("got %v", got)
	}
}

func TestFromGRPCRoundTrip(t *testing.T) {
	in := metadata.MD{"x-a": {"1"}, "blob-bin": {"\x00\xff"}}
	if got := ToGRPC(FromGRPC(in), false); !reflect.DeepEqual(got, in) {
		t.Fatalf("got %v, want %v", got, in)
	}
}

func TestContentLength(t *testing.T) {
	for _, c := range []struct {
		md   MD
		want int64
	}{{md("Content-Length", "12"), 12}, {md("content-length", " 7 "), 7}, {md("Content-Length", "x"), -1}, {md("Content-Length", "-1"), -1}, {MD{}, -1}} {
		if got := ContentLength(c.md); got != c.want {
			t.Errorf("ContentLength(%v) = %d, want %d", c.md, got, c.want)
		}
	}
}

func TestStatusTables(t *testing.T) {
	for s, want := range map[int]codes.Code{200: codes.OK, 299: codes.OK, 400: codes.Internal, 401: codes.Unauthenticated, 403: codes.PermissionDenied,
		404: codes.NotFound, 408: codes.Canceled, 409: codes.AlreadyExists, 429: codes.ResourceExhausted, 500: codes.Unknown,
		501: codes.Unimplemented, 503: codes.Unavailable, 504: codes.DeadlineExceeded, 302: codes.Unknown, 418: codes.Unknown} {
		if got := CodeFromHTTPStatus(s); got != want {
			t.Errorf("CodeFromHTTPStatus(%d) = %v, want %v", s, got, want)
		}
	}
	for c, want := range map[codes.Code]int{codes.OK: 200, codes.Canceled: 408, codes.Unknown: 500, codes.InvalidArgument: 400,
		codes.DeadlineExceeded: 504, codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403, codes.Unauthenticated: 401,
		codes.ResourceExhausted: 429, codes.FailedPrecondition: 400, codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 501,
		codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Code(99): 500} {
		if got := HTTPStatusFromCode(c); got != want {
			t.Errorf("HTTPStatusFromCode(%v) = %d, want %d", c, got, want)
		}
	}
}

func TestErrorFromHTTPStatus(t *testing.T) {
	if err := ErrorFromHTTPStatus(204, nil); err != nil {
		t.Fatal(err)
	}
	body := []byte(strings.Repeat("é", 40)) // 80 bytes; a cut in a rune must not break the proto
	st := status.Convert(ErrorFromHTTPStatus(404, body))
	if st.Code() != codes.NotFound || st.Message() != "Not Found" || len(st.Details()) != 1 {
		t.Fatalf("got %v %v", st, st.Details())
	}
	info := st.Details()[0].(*errdetails.ErrorInfo)
	if info.GetReason() != "Not Found" || info.GetDomain() != "dapr.io" || info.GetMetadata()["http.code"] != "404" || info.GetMetadata()["http.error_message"] != strings.Repeat("é", 31) {
		t.Fatalf("ErrorInfo %v", info)
	}
}

func TestReadAll(t *testing.T) {
	if b, err := ReadAll(strings.NewReader("abc"), 3, 3); err != nil || string(b) != "abc" {
		t.Fatal(b, err)
	}
	if _, err := ReadAll(strings.NewReader("abcd"), -1, 3); !errors.As(err, new(*TooLargeError)) {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadAll(strings.NewReader("abcd"), 4, 3); !errors.As(err, new(*TooLargeError)) {
		t.Fatalf("declared over the limit: %v", err)
	}
}
