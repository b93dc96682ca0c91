// Package apierr is the one place where Mecha's API errors are defined and
// mapped to the wire: Dapr's errorCode strings, HTTP statuses and gRPC codes.
//
// Building blocks return *Error values built from the Kind table below;
// transports call WriteHTTP or GRPC once per handler. Errors that are not
// *Error (a bug, a context cancellation) are mapped generically, so no error
// ever reaches a client without a status.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Domain is the ErrorInfo domain Dapr uses.
const Domain = "dapr.io"

// Kind is one row of the mapping table: a Dapr errorCode with its HTTP status,
// gRPC code and (optional) ErrorInfo reason.
type Kind struct {
	Code   string
	HTTP   int
	GRPC   codes.Code
	Reason string
}

// The mapping table. Codes and statuses follow daprd (v1.14–v1.18), including
// its quirks where clients depend on them.
var (
	// Common.
	BadRequest       = Kind{"ERR_BAD_REQUEST", http.StatusBadRequest, codes.InvalidArgument, ""}
	MalformedRequest = Kind{"ERR_MALFORMED_REQUEST", http.StatusBadRequest, codes.InvalidArgument, ""}
	BodyRead         = Kind{"ERR_BODY_READ", http.StatusBadRequest, codes.InvalidArgument, ""}
	BodyTooLarge     = Kind{"ERR_BODY_TOO_LARGE", http.StatusRequestEntityTooLarge, codes.ResourceExhausted, ""}
	Internal         = Kind{"ERR_INTERNAL", http.StatusInternalServerError, codes.Internal, ""}
	Unimplemented    = Kind{"ERR_API_UNIMPLEMENTED", http.StatusNotImplemented, codes.Unimplemented, ""}
	Canceled         = Kind{"ERR_INTERNAL", 499, codes.Canceled, ""}
	Timeout          = Kind{"ERR_INTERNAL", http.StatusGatewayTimeout, codes.DeadlineExceeded, ""}

	// Health.
	HealthNotReady         = Kind{"ERR_HEALTH_NOT_READY", http.StatusInternalServerError, codes.Internal, ""}
	HealthAppIDNotMatch    = Kind{"ERR_HEALTH_APPID_NOT_MATCH", http.StatusInternalServerError, codes.Internal, ""}
	OutboundHealthNotReady = Kind{"ERR_OUTBOUND_HEALTH_NOT_READY", http.StatusInternalServerError, codes.Internal, ""}

	// Service invocation without a target app id (the other kinds are in invoke.go).
	DirectInvokeNoAppID = Kind{"ERR_DIRECT_INVOKE", http.StatusNotFound, codes.NotFound, ""}

	// Metadata.
	MetadataSet = Kind{"ERR_METADATA_SET", http.StatusBadRequest, codes.InvalidArgument, ""}

	// State.
	StateStoreNotFound      = Kind{"ERR_STATE_STORE_NOT_FOUND", http.StatusBadRequest, codes.InvalidArgument, "DAPR_STATE_NOT_FOUND"}
	StateStoreNotConfigured = Kind{"ERR_STATE_STORE_NOT_CONFIGURED", http.StatusInternalServerError, codes.FailedPrecondition, "DAPR_STATE_NOT_CONFIGURED"}
	StateIllegalKey         = Kind{"ERR_MALFORMED_REQUEST", http.StatusBadRequest, codes.InvalidArgument, "DAPR_STATE_ILLEGAL_KEY"}
	StateGet                = Kind{"ERR_STATE_GET", http.StatusInternalServerError, codes.Internal, ""}
	StateBulkGet            = Kind{"ERR_STATE_BULK_GET", http.StatusInternalServerError, codes.Internal, ""}
	StateSave               = Kind{"ERR_STATE_SAVE", http.StatusInternalServerError, codes.Internal, ""}
	StateSaveETagMismatch   = Kind{"ERR_STATE_SAVE", http.StatusConflict, codes.Aborted, ""}
	StateSaveETagInvalid    = Kind{"ERR_STATE_SAVE", http.StatusBadRequest, codes.InvalidArgument, ""}
	StateDelete             = Kind{"ERR_STATE_DELETE", http.StatusInternalServerError, codes.Internal, ""}
	StateDeleteETagMismatch = Kind{"ERR_STATE_DELETE", http.StatusConflict, codes.Aborted, ""}
	StateDeleteETagInvalid  = Kind{"ERR_STATE_DELETE", http.StatusBadRequest, codes.InvalidArgument, ""}
	StateTransaction        = Kind{"ERR_STATE_TRANSACTION", http.StatusInternalServerError, codes.Internal, ""}
	StateTransactionETag    = Kind{"ERR_STATE_TRANSACTION", http.StatusConflict, codes.Aborted, ""}
	StateTransactionInvalid = Kind{"ERR_STATE_TRANSACTION", http.StatusBadRequest, codes.InvalidArgument, ""}
	StateNotSupportedOp     = Kind{"ERR_NOT_SUPPORTED_STATE_OPERATION", http.StatusBadRequest, codes.Unimplemented, ""} // daprd answers Unimplemented over gRPC
	StateTxNotSupported     = Kind{"ERR_STATE_STORE_NOT_SUPPORTED", http.StatusInternalServerError, codes.Unimplemented, "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"}
	StateTooManyTx          = Kind{"ERR_STATE_STORE_TOO_MANY_TRANSACTIONS", http.StatusBadRequest, codes.InvalidArgument, "DAPR_STATE_TOO_MANY_TRANSACTIONS"}
)

// Error is an API error: a Kind, a message for humans, and optional details.
type Error struct {
	Kind    Kind
	Message string
	// Metadata goes into the ErrorInfo detail.
	Metadata map[string]string
	// ResourceType and ResourceName, when set, produce a ResourceInfo detail
	// (e.g. "state", "statestore").
	ResourceType, ResourceName string
	// Field, when set, produces a BadRequest field violation.
	Field string
	cause error
}

// New returns an error of kind k with a formatted message.
func (k Kind) New(format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k whose message is the formatted text
// followed by ": " and cause's message; errors.Is/As see cause.
func (k Kind) Wrap(cause error, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	return &Error{Kind: k, Message: msg, cause: cause}
}

// WithResource attaches a ResourceInfo detail.
func (e *Error) WithResource(typ, name string) *Error {
	e.ResourceType, e.ResourceName = typ, name
	return e
}

// WithField attaches a BadRequest field violation for field.
func (e *Error) WithField(field string) *Error {
	e.Field = field
	return e
}

// WithMetadata adds ErrorInfo metadata.
func (e *Error) WithMetadata(kv ...string) *Error {
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Metadata[kv[i]] = kv[i+1]
	}
	return e
}

func (e *Error) Error() string { return e.Kind.Code + ": " + e.Message }

func (e *Error) Unwrap() error { return e.cause }

// From converts any error into an *Error: *Error values (also wrapped) are
// returned as they are, context errors keep their meaning, and everything
// else becomes ERR_INTERNAL.
func From(err error) *Error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Canceled.Wrap(err, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout.Wrap(err, "deadline exceeded")
	}
	return Internal.Wrap(err, "internal error")
}
