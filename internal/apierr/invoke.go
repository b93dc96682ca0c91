package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Service invocation. daprd reports every failure to deliver a call as
// ERR_DIRECT_INVOKE with HTTP 500 / gRPC Internal ("failed to invoke, id:
// X, err: …"), except a callee's access-control refusal (403 /
// PermissionDenied). The app's own statuses are not errors: they pass
// through.
var (
	DirectInvoke          = Kind{"ERR_DIRECT_INVOKE", http.StatusInternalServerError, codes.Internal, ""}
	DirectInvokeForbidden = Kind{"ERR_DIRECT_INVOKE", http.StatusForbidden, codes.PermissionDenied, ""}
)
