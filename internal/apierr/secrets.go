package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Secrets. daprd answers an unknown secret store with HTTP 401 (not 400 as
// for every other block) and attaches no error details to these codes;
// clients match on both, so Mecha does the same.
var (
	SecretStoresNotConfigured = Kind{"ERR_SECRET_STORES_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition, ""}
	SecretStoreNotFound       = Kind{"ERR_SECRET_STORE_NOT_FOUND", http.StatusUnauthorized, codes.InvalidArgument, ""}
	SecretPermissionDenied    = Kind{"ERR_PERMISSION_DENIED", http.StatusForbidden, codes.PermissionDenied, ""}
	SecretGet                 = Kind{"ERR_SECRET_GET", http.StatusInternalServerError, codes.Internal, ""}
)
