package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Actors, with daprd 1.18's statuses (pkg/messages/predefined.go). Some are
// odd, such as ERR_ACTOR_INSTANCE_MISSING answering 400 over HTTP but
// Internal over gRPC, or malformed reminder durations answering 500
// ERR_ACTOR_REMINDER_CREATE; SDKs key off them, so they are kept.
var (
	ActorRuntimeNotFound       = Kind{"ERR_ACTOR_RUNTIME_NOT_FOUND", http.StatusInternalServerError, codes.Internal, ""}
	ActorNoPlacement           = Kind{"ERR_ACTOR_NO_PLACEMENT", http.StatusBadRequest, codes.Unavailable, ""}
	ActorRuntimeClosed         = Kind{"ERR_ACTOR_RUNTIME_CLOSED", http.StatusServiceUnavailable, codes.Unavailable, ""}
	ActorNoAppChannel          = Kind{"ERR_ACTOR_NO_APP_CHANNEL", http.StatusBadRequest, codes.Unavailable, ""}
	ActorInstanceMissing       = Kind{"ERR_ACTOR_INSTANCE_MISSING", http.StatusBadRequest, codes.Internal, ""}
	ActorInvokeMethod          = Kind{"ERR_ACTOR_INVOKE_METHOD", http.StatusInternalServerError, codes.Internal, ""}
	ActorNoAddress             = Kind{"ERR_ACTOR_NO_ADDRESS", http.StatusNotFound, codes.FailedPrecondition, ""}
	ActorStackDepth            = Kind{"ERR_ACTOR_STACK_DEPTH", http.StatusInternalServerError, codes.ResourceExhausted, ""}
	ActorStateGet              = Kind{"ERR_ACTOR_STATE_GET", http.StatusInternalServerError, codes.Internal, ""}
	ActorStateTransactionSave  = Kind{"ERR_ACTOR_STATE_TRANSACTION_SAVE", http.StatusInternalServerError, codes.Internal, ""}
	ActorStateOpNotSupported   = Kind{"ERR_NOT_SUPPORTED_STATE_OPERATION", http.StatusInternalServerError, codes.Unimplemented, ""}
	ActorReminderCreate        = Kind{"ERR_ACTOR_REMINDER_CREATE", http.StatusInternalServerError, codes.Internal, ""}
	ActorReminderGet           = Kind{"ERR_ACTOR_REMINDER_GET", http.StatusInternalServerError, codes.Internal, ""}
	ActorReminderDelete        = Kind{"ERR_ACTOR_REMINDER_DELETE", http.StatusInternalServerError, codes.Internal, ""}
	ActorReminderNotFound      = Kind{"ERR_ACTOR_REMINDER_NOT_FOUND", http.StatusNotFound, codes.NotFound, ""}
	ActorReminderAlreadyExists = Kind{"ERR_ACTOR_REMINDER_ALREADY_EXISTS", http.StatusConflict, codes.AlreadyExists, ""}
	ActorReminderNonHosted     = Kind{"ERR_ACTOR_REMINDER_NON_HOSTED", http.StatusForbidden, codes.PermissionDenied, ""}
	ActorTimerCreate           = Kind{"ERR_ACTOR_TIMER_CREATE", http.StatusInternalServerError, codes.Internal, ""}
)
