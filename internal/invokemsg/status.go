package invokemsg

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HTTPStatusFromCode is the HTTP status daprd answers an HTTP caller whose
// gRPC app returned code (grpc-gateway's table).
func HTTPStatusFromCode(code codes.Code) int {
	switch code {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return http.StatusRequestTimeout
	case codes.Unknown, codes.Internal, codes.DataLoss:
		return http.StatusInternalServerError
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		// FailedPrecondition deliberately not 412, as in grpc-gateway.
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// CodeFromHTTPStatus is the gRPC code daprd answers a gRPC caller whose
// HTTP app returned status. It is daprd's table, quirks included: 400 is
// Internal and 409 AlreadyExists; any other non-2xx status is Unknown.
func CodeFromHTTPStatus(s int) codes.Code {
	if s >= 200 && s < 300 {
		return codes.OK
	}
	switch s {
	case http.StatusRequestTimeout:
		return codes.Canceled
	case http.StatusInternalServerError:
		return codes.Unknown
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	return codes.Unknown
}

// maxErrorInfoValue is how much of an app's error body goes into the
// ErrorInfo metadata (its values are limited to 64 characters).
const maxErrorInfoValue = 63

// ErrorFromHTTPStatus is the gRPC error daprd answers a gRPC caller whose
// HTTP app returned a non-2xx status (nil for 2xx): the mapped code, the
// status text as message, and an ErrorInfo (domain dapr.io, reason = the
// status text) whose metadata holds "http.code" and the start of the body
// as "http.error_message".
func ErrorFromHTTPStatus(s int, body []byte) error {
	code := CodeFromHTTPStatus(s)
	if code == codes.OK {
		return nil
	}
	text := http.StatusText(s)
	st := status.New(code, text)
	detail := string(body[:min(len(body), maxErrorInfoValue)])
	if !utf8.ValidString(detail) {
		detail = strings.ToValidUTF8(detail, "")
	}
	if ds, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason:   text,
		Domain:   "dapr.io",
		Metadata: map[string]string{"http.code": strconv.Itoa(s), "http.error_message": detail},
	}); err == nil {
		st = ds
	}
	return st.Err()
}
