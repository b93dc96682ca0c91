package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Distributed lock (alpha). Malformed requests (empty resourceId or
// lockOwner, non-positive expiryInSeconds) use MalformedRequest, as daprd
// does. daprd attaches no error details to these.
var (
	LockStoreNotConfigured = Kind{"ERR_LOCK_STORE_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition, ""}
	LockStoreNotFound      = Kind{"ERR_LOCK_STORE_NOT_FOUND", http.StatusBadRequest, codes.InvalidArgument, ""}
	LockTry                = Kind{"ERR_TRY_LOCK", http.StatusInternalServerError, codes.Internal, ""}
	LockUnlock             = Kind{"ERR_UNLOCK", http.StatusInternalServerError, codes.Internal, ""}
)
