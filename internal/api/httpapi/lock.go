package httpapi

import (
	"net/http"
	"strconv"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/blocks/lock"
)

// lockRoutes registers the lock API (alpha).
func (a *api) lockRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1.0-alpha1/lock/{store}", a.tryLock)
	mux.HandleFunc("POST /v1.0-alpha1/unlock/{store}", a.unlock)
}

// lockJSON decodes bodies the way daprd does: as the protobuf message in
// protojson, so "expiryInSeconds" may be a number or a numeric string,
// snake_case names are accepted, unknown fields are ignored and an empty
// body is an empty request (which then fails validation).
var lockJSON = protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}

func (a *api) decodeProto(r *http.Request, m proto.Message) error {
	body, err := a.readBody(r)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	if err := lockJSON.Unmarshal(body, m); err != nil {
		return apierr.MalformedRequest.Wrap(err, "failed deserializing HTTP body")
	}
	return nil
}

// tryLock answers 200 {"success":true|false}; the field is always present.
func (a *api) tryLock(w http.ResponseWriter, r *http.Request) {
	var in runtimev1.TryLockRequest
	if err := a.decodeProto(r, &in); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	ok, err := a.Lock.TryLock(r.Context(), lock.TryLockRequest{
		Store:           r.PathValue("store"),
		ResourceID:      in.GetResourceId(),
		LockOwner:       in.GetLockOwner(),
		ExpiryInSeconds: in.GetExpiryInSeconds(),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"success":`+strconv.FormatBool(ok)+`}`))
}

// unlock answers 200 {"status":N} with the status as a number, as daprd
// does (0 SUCCESS, 1 LOCK_DOES_NOT_EXIST, 2 LOCK_BELONGS_TO_OTHERS).
func (a *api) unlock(w http.ResponseWriter, r *http.Request) {
	var in runtimev1.UnlockRequest
	if err := a.decodeProto(r, &in); err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	st, err := a.Lock.Unlock(r.Context(), lock.UnlockRequest{
		Store:      r.PathValue("store"),
		ResourceID: in.GetResourceId(),
		LockOwner:  in.GetLockOwner(),
	})
	if err != nil {
		apierr.WriteHTTP(w, err)
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":`+strconv.Itoa(int(st))+`}`))
}
