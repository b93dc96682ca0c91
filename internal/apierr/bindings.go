package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Bindings. daprd answers every output binding failure (unknown binding,
// missing or unsupported operation, component error) with the same code:
// 500 over HTTP, Internal with an ErrorInfo reason over gRPC.
var (
	InvokeOutputBinding = Kind{"ERR_INVOKE_OUTPUT_BINDING", http.StatusInternalServerError, codes.Internal, "ERR_INVOKE_OUTPUT_BINDING"}
)
