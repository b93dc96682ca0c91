package grpcapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("error = %v, want code %s", err, want)
	}
	return st
}

func TestStateOverGRPC(t *testing.T) {
	for _, sc := range mechatest.StateStores() {
		t.Run(sc.Name, func(t *testing.T) {
			s := mechatest.Start(t, func(o *runtime.Options) {
				o.AppID = "g" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
			}, sc.YAML(t, "statestore", "actorStateStore", "true"))
			testState(t, s.Dapr)
		})
	}
}

func testState(t *testing.T, c runtimev1.DaprClient) {
	ctx := context.Background()
	// Missing key: OK, empty.
	got, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "missing"})
	if err != nil || got.GetData() != nil || got.GetEtag() != "" {
		t.Fatalf("GetState(missing) = %v, %v", got, err)
	}
	// Raw bytes round-trip.
	val := []byte{0, 1, 2, 'x', 0xff}
	if _, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k", Value: val}, {Key: "k2", Value: []byte("2")}}}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k", Consistency: commonv1.StateOptions_CONSISTENCY_STRONG})
	if err != nil || string(got.GetData()) != string(val) || got.GetEtag() == "" {
		t.Fatalf("GetState = %v, %v", got, err)
	}
	etag := got.GetEtag()
	// Update with etag, then the stale one is Aborted.
	item := &commonv1.StateItem{Key: "k", Value: []byte("v2"), Etag: &commonv1.Etag{Value: etag}}
	if _, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{item}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{item}})
	wantCode(t, err, codes.Aborted)
	_, err = c.DeleteState(ctx, &runtimev1.DeleteStateRequest{StoreName: "statestore", Key: "k", Etag: &commonv1.Etag{Value: etag}})
	wantCode(t, err, codes.Aborted)
	// First-write without etag on an existing key.
	fw := &commonv1.StateOptions{Concurrency: commonv1.StateOptions_CONCURRENCY_FIRST_WRITE}
	_, err = c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k", Value: []byte("x"), Options: fw}}})
	wantCode(t, err, codes.Aborted)

	// Bulk get keeps order and reports missing keys.
	bulk, err := c.GetBulkState(ctx, &runtimev1.GetBulkStateRequest{StoreName: "statestore", Keys: []string{"k2", "nope", "k"}})
	if err != nil {
		t.Fatal(err)
	}
	if items := bulk.GetItems(); len(items) != 3 || string(items[0].GetData()) != "2" || items[1].GetData() != nil || string(items[2].GetData()) != "v2" {
		t.Fatalf("GetBulkState = %v", bulk)
	}
	// Transaction: atomic upsert + delete; a stale etag aborts all.
	k2, _ := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k2"})
	if _, err := c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "k2", Value: []byte("2")}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: []*runtimev1.TransactionalStateOperation{
		{OperationType: "upsert", Request: &commonv1.StateItem{Key: "t1", Value: []byte("1")}},
		{OperationType: "upsert", Request: &commonv1.StateItem{Key: "k2", Value: []byte("x"), Etag: &commonv1.Etag{Value: k2.GetEtag()}}},
	}})
	wantCode(t, err, codes.Aborted)
	if got, _ := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "t1"}); got.GetData() != nil {
		t.Fatal("aborted transaction wrote t1")
	}
	_, err = c.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: []*runtimev1.TransactionalStateOperation{
		{OperationType: "upsert", Request: &commonv1.StateItem{Key: "t1", Value: []byte("1")}},
		{OperationType: "delete", Request: &commonv1.StateItem{Key: "k2"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "k2"}); got.GetData() != nil {
		t.Fatal("transaction did not delete k2")
	}
	_, err = c.ExecuteStateTransaction(ctx, &runtimev1.ExecuteStateTransactionRequest{StoreName: "statestore", Operations: []*runtimev1.TransactionalStateOperation{{OperationType: "patch", Request: &commonv1.StateItem{Key: "x"}}}})
	wantCode(t, err, codes.Unimplemented)
	// Bulk delete.
	if _, err := c.DeleteBulkState(ctx, &runtimev1.DeleteBulkStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "t1"}, {Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "t1"}); got.GetData() != nil {
		t.Fatal("DeleteBulkState left t1")
	}

	// Errors carry Dapr's codes and details.
	_, err = c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "nope", Key: "k"})
	st := wantCode(t, err, codes.InvalidArgument)
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = info.GetReason()
		}
	}
	if reason != "DAPR_STATE_NOT_FOUND" {
		t.Fatalf("ErrorInfo reason = %q, want DAPR_STATE_NOT_FOUND (details %v)", reason, st.Details())
	}
	_, err = c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "a||b"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: ""}}})
	wantCode(t, err, codes.InvalidArgument)
	// TTL through metadata.
	_, err = c.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "ttl", Value: []byte("1"), Metadata: map[string]string{"ttlInSeconds": "1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	mechatest.Eventually(t, 10*time.Second, func() error {
		got, err := c.GetState(ctx, &runtimev1.GetStateRequest{StoreName: "statestore", Key: "ttl"})
		if err != nil || got.GetData() != nil {
			return status.Errorf(codes.Unknown, "still there: %v %v", got, err)
		}
		return nil
	})
}

func TestMetadataShutdownAndUnimplemented(t *testing.T) {
	s := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "meta" }, mechatest.InMemory, "kind: Component\napiVersion: dapr.io/v1alpha1\nmetadata: {name: bad}\nspec: {type: state.nonexistent}\n")
	ctx := context.Background()
	if _, err := s.Dapr.SetMetadata(ctx, &runtimev1.SetMetadataRequest{Key: "cliPID", Value: "42"}); err != nil {
		t.Fatal(err)
	}
	md, err := s.Dapr.GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if md.GetId() != "meta" || md.GetExtendedMetadata()["cliPID"] != "42" || md.GetRuntimeVersion() == "" {
		t.Fatalf("GetMetadata = %v", md)
	}
	comps := md.GetRegisteredComponents()
	if len(comps) != 1 || comps[0].GetName() != "statestore" || comps[0].GetType() != "state.in-memory" || !strings.Contains(strings.Join(comps[0].GetCapabilities(), ","), "ACTOR") {
		t.Fatalf("components = %v", comps)
	}
	if !strings.Contains(md.GetExtendedMetadata()["mecha.resourceErrors"], "state.nonexistent") {
		t.Fatalf("resource errors missing: %v", md.GetExtendedMetadata())
	}
	_, err = s.Dapr.SetMetadata(ctx, &runtimev1.SetMetadataRequest{Key: ""})
	wantCode(t, err, codes.InvalidArgument)

	_, err = s.Dapr.ScheduleJobAlpha1(ctx, &runtimev1.ScheduleJobRequest{Job: &runtimev1.Job{Name: "j"}})
	if st := wantCode(t, err, codes.Unimplemented); !strings.Contains(st.Message(), "ScheduleJobAlpha1") {
		t.Fatalf("Unimplemented message %q does not name the method", st.Message())
	}
	_, err = s.Dapr.QueryStateAlpha1(ctx, &runtimev1.QueryStateRequest{StoreName: "statestore"})
	wantCode(t, err, codes.Unimplemented)

	if _, err := s.Dapr.Shutdown(ctx, &runtimev1.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.RT.ShutdownRequested():
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not request a shutdown")
	}
}

func TestMessageSizeLimit(t *testing.T) {
	s := mechatest.Start(t, func(o *runtime.Options) { o.MaxBodySize = 1 << 20 }, mechatest.InMemory)
	ctx := context.Background()
	_, err := s.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "big", Value: make([]byte, 2<<20)}}})
	wantCode(t, err, codes.ResourceExhausted)
	// Under the limit works, and the server keeps serving.
	if _, err := s.Dapr.SaveState(ctx, &runtimev1.SaveStateRequest{StoreName: "statestore", States: []*commonv1.StateItem{{Key: "ok", Value: make([]byte, 512<<10)}}}); err != nil {
		t.Fatal(err)
	}
}
