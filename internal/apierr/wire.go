package apierr

import (
	"encoding/json"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// httpBody is Dapr's JSON error body.
type httpBody struct {
	ErrorCode string           `json:"errorCode"`
	Message   string           `json:"message"`
	Details   []map[string]any `json:"details,omitempty"`
}

// WriteHTTP writes err as Dapr's JSON error body with the mapped status.
func WriteHTTP(w http.ResponseWriter, err error) {
	e := From(err)
	body := httpBody{ErrorCode: e.Kind.Code, Message: e.Message}
	if e.Kind.Reason != "" {
		info := map[string]any{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": e.Kind.Reason,
			"domain": Domain,
		}
		if len(e.Metadata) > 0 {
			info["metadata"] = e.Metadata
		}
		body.Details = append(body.Details, info)
	}
	if e.ResourceName != "" {
		body.Details = append(body.Details, map[string]any{
			"@type":         "type.googleapis.com/google.rpc.ResourceInfo",
			"resource_type": e.ResourceType,
			"resource_name": e.ResourceName,
			"owner":         "",
			"description":   "",
		})
	}
	if e.Field != "" {
		body.Details = append(body.Details, map[string]any{
			"@type": "type.googleapis.com/google.rpc.BadRequest",
			"field_violations": []map[string]string{
				{"field": e.Field, "description": e.Message},
			},
		})
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Kind.HTTP)
	_, _ = w.Write(b)
}

// GRPC converts err to a gRPC status error with ErrorInfo, ResourceInfo and
// BadRequest details where the error carries them.
func GRPC(err error) error {
	if err == nil {
		return nil
	}
	e := From(err)
	st := status.New(e.Kind.GRPC, e.Message)
	var ds []protoadapt.MessageV1
	if e.Kind.Reason != "" {
		ds = append(ds, &errdetails.ErrorInfo{Reason: e.Kind.Reason, Domain: Domain, Metadata: e.Metadata})
	}
	if e.ResourceName != "" {
		ds = append(ds, &errdetails.ResourceInfo{ResourceType: e.ResourceType, ResourceName: e.ResourceName})
	}
	if e.Field != "" {
		ds = append(ds, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: e.Field, Description: e.Message}}})
	}
	if len(ds) > 0 {
		if withDetails, derr := st.WithDetails(ds...); derr == nil {
			st = withDetails
		}
	}
	return st.Err()
}
