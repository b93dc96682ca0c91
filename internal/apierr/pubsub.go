package apierr

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// Pub/sub, as daprd 1.18 (pkg/api/errors/pubsub.go, errorcodes): note the
// quirks clients see, kept on purpose: an unknown pubsub is 404 over HTTP
// but InvalidArgument over gRPC; an empty pubsub or topic name is 404;
// a CloudEvent that cannot be built is 500 over HTTP but InvalidArgument
// over gRPC. Every one carries an ErrorInfo with daprd's reason.
var (
	PubsubNotFound      = Kind{"ERR_PUBSUB_NOT_FOUND", http.StatusNotFound, codes.InvalidArgument, "DAPR_PUBSUB_NOT_FOUND"}
	PubsubNotConfigured = Kind{"ERR_PUBSUB_NOT_CONFIGURED", http.StatusBadRequest, codes.FailedPrecondition, "DAPR_PUBSUB_NOT_CONFIGURED"}
	PubsubEmpty         = Kind{"ERR_PUBSUB_EMPTY", http.StatusNotFound, codes.InvalidArgument, "DAPR_PUBSUB_NAME_EMPTY"}
	PubsubTopicEmpty    = Kind{"ERR_TOPIC_NAME_EMPTY", http.StatusNotFound, codes.InvalidArgument, "DAPR_PUBSUB_TOPIC_NAME_EMPTY"}
	PubsubForbidden     = Kind{"ERR_PUBSUB_FORBIDDEN", http.StatusForbidden, codes.PermissionDenied, "DAPR_PUBSUB_FORBIDDEN"}
	PubsubPublish       = Kind{"ERR_PUBSUB_PUBLISH_MESSAGE", http.StatusInternalServerError, codes.Internal, "DAPR_PUBSUB_PUBLISH_MESSAGE"}
	PubsubMetadata      = Kind{"ERR_PUBSUB_REQUEST_METADATA", http.StatusBadRequest, codes.InvalidArgument, "DAPR_PUBSUB_METADATA_DESERIALIZATION"}
	PubsubCloudEvent    = Kind{"ERR_PUBSUB_CLOUD_EVENTS_SER", http.StatusInternalServerError, codes.InvalidArgument, "DAPR_PUBSUB_CLOUD_EVENT_CREATION"}
	// The three ERR_PUBSUB_EVENTS_SER kinds differ only in their reason:
	// an event that does not match its contentType, a bad or duplicated
	// entryId, and a bulk body that is not a JSON array of entries.
	PubsubMarshalEnvelope = Kind{"ERR_PUBSUB_EVENTS_SER", http.StatusBadRequest, codes.InvalidArgument, "DAPR_PUBSUB_MARSHAL_ENVELOPE"}
	PubsubMarshalEvents   = Kind{"ERR_PUBSUB_EVENTS_SER", http.StatusBadRequest, codes.InvalidArgument, "DAPR_PUBSUB_MARSHAL_EVENTS"}
	PubsubUnmarshalEvents = Kind{"ERR_PUBSUB_EVENTS_SER", http.StatusBadRequest, codes.InvalidArgument, "DAPR_PUBSUB_UNMARSHAL_EVENTS"}
)
