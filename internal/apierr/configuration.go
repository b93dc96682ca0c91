package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Configuration API kinds. The gRPC details carry ErrorInfo with the errorCode
// as reason, as daprd's apierrors.Basic does for these codes.
var (
	ConfigurationStoreNotConfigured = Kind{"ERR_CONFIGURATION_STORE_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition, "ERR_CONFIGURATION_STORE_NOT_CONFIGURED"}
	ConfigurationStoreNotFound      = Kind{"ERR_CONFIGURATION_STORE_NOT_FOUND", http.StatusBadRequest, codes.InvalidArgument, "ERR_CONFIGURATION_STORE_NOT_FOUND"}
	ConfigurationGet                = Kind{"ERR_CONFIGURATION_GET", http.StatusInternalServerError, codes.Internal, "ERR_CONFIGURATION_GET"}
	// daprd answers a failed subscribe with InvalidArgument over gRPC.
	ConfigurationSubscribe   = Kind{"ERR_CONFIGURATION_SUBSCRIBE", http.StatusInternalServerError, codes.InvalidArgument, "ERR_CONFIGURATION_SUBSCRIBE"}
	ConfigurationUnsubscribe = Kind{"ERR_CONFIGURATION_UNSUBSCRIBE", http.StatusInternalServerError, codes.Internal, "ERR_CONFIGURATION_UNSUBSCRIBE"}
	// ConfigurationAppChannelNil is daprd's answer to an HTTP subscribe on a
	// sidecar without --app-port: updates would have nowhere to go.
	ConfigurationAppChannelNil = Kind{"ERR_APP_CHANNEL_NIL", http.StatusInternalServerError, codes.Internal, ""}
)
