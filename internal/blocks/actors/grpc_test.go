package actors_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestGRPCActorAPI drives the actor API over gRPC as the SDKs do: invoke,
// state transaction and read, reminders (data as bytes, which the app gets
// as a base64 JSON string) and timers, and the error codes.
func TestGRPCActorAPI(t *testing.T) {
	c := actorstest.NewCluster()
	store := sqliteStore(t, filepath.Join(t.TempDir(), "state.db"))
	a := startNode(t, c, "grpcactors", newActorApp(t, "a", counterConfig("1h", "1h")), store, nil)
	waitHosting(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	resp, err := a.Dapr.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Counter", ActorId: "g1", Method: "incr"})
	if err != nil || string(resp.GetData()) != "1" {
		t.Fatalf("InvokeActor: %v %q", err, resp.GetData())
	}
	_, err = a.Dapr.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{
		ActorType: "Counter", ActorId: "g1",
		Operations: []*runtimev1.TransactionalActorStateOperation{
			{OperationType: "upsert", Key: "k1", Value: &anypb.Any{Value: []byte(`"v1"`)}},
			{OperationType: "upsert", Key: "k2", Value: &anypb.Any{Value: []byte(`2`)}},
			{OperationType: "delete", Key: "k2"},
		},
	})
	if err != nil {
		t.Fatalf("ExecuteActorStateTransaction: %v", err)
	}
	st, err := a.Dapr.GetActorState(ctx, &runtimev1.GetActorStateRequest{ActorType: "Counter", ActorId: "g1", Key: "k1"})
	if err != nil || string(st.GetData()) != `"v1"` {
		t.Fatalf("GetActorState k1: %v %q", err, st.GetData())
	}
	st, err = a.Dapr.GetActorState(ctx, &runtimev1.GetActorStateRequest{ActorType: "Counter", ActorId: "g1", Key: "k2"})
	if err != nil || len(st.GetData()) != 0 {
		t.Fatalf("GetActorState k2 (deleted): %v %q", err, st.GetData())
	}
	// The same state through HTTP: one key layout for both APIs.
	if r := a.Do(t, http.MethodGet, "/v1.0/actors/Counter/g1/state/k1", nil); string(r.Body) != `"v1"` {
		t.Fatalf("HTTP read of gRPC-written state: %d %q", r.Status, r.Body)
	}

	_, err = a.Dapr.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{
		ActorType: "Counter", ActorId: "g1", Name: "gr", DueTime: "0s", Period: "R2/PT0.1S", Data: []byte("hi"),
	})
	if err != nil {
		t.Fatalf("RegisterActorReminder: %v", err)
	}
	rem, err := a.Dapr.GetActorReminder(ctx, &runtimev1.GetActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "gr"})
	if err == nil {
		var bv wrapperspb.BytesValue
		if err := rem.GetData().UnmarshalTo(&bv); err != nil || string(bv.GetValue()) != `"aGk="` || rem.GetPeriod() != "R2/PT0.1S" {
			t.Fatalf("GetActorReminder: %v data %q period %q", err, bv.GetValue(), rem.GetPeriod())
		}
	} else if status.Code(err) != codes.NotFound {
		// It may have fired twice and finished already.
		t.Fatalf("GetActorReminder: %v", err)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("remind", "Counter", "g1", "gr"); n != 2 {
			return fmt.Errorf("%d firings", n)
		}
		return nil
	})
	var cb struct {
		Data []byte `json:"data"` // the SDKs decode it so: a base64 string
	}
	if err := json.Unmarshal(a.app.matching("remind", "g1", "gr")[0].Body, &cb); err != nil || string(cb.Data) != "hi" {
		t.Fatalf("reminder data in the callback: %v %q", err, cb.Data)
	}
	_, err = a.Dapr.GetActorReminder(ctx, &runtimev1.GetActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "gr"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("GetActorReminder after the last repetition: %v, want NotFound", err)
	}

	_, err = a.Dapr.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "long", DueTime: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	no := false
	_, err = a.Dapr.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "long", DueTime: "2h", Overwrite: &no})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("RegisterActorReminder overwrite=false on an existing reminder: %v, want AlreadyExists", err)
	}
	if _, err := a.Dapr.UnregisterActorReminder(ctx, &runtimev1.UnregisterActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "long"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Dapr.GetActorReminder(ctx, &runtimev1.GetActorReminderRequest{ActorType: "Counter", ActorId: "g1", Name: "long"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after UnregisterActorReminder: %v", err)
	}

	_, err = a.Dapr.RegisterActorTimer(ctx, &runtimev1.RegisterActorTimerRequest{ActorType: "Counter", ActorId: "g1", Name: "gt", DueTime: "0s", Period: "50ms", Callback: "cb", Data: []byte("x")})
	if err != nil {
		t.Fatalf("RegisterActorTimer: %v", err)
	}
	mechatest.Eventually(t, 5*time.Second, func() error {
		if n := a.app.count("timer", "Counter", "g1", "gt"); n < 2 {
			return fmt.Errorf("%d firings", n)
		}
		return nil
	})
	if _, err := a.Dapr.UnregisterActorTimer(ctx, &runtimev1.UnregisterActorTimerRequest{ActorType: "Counter", ActorId: "g1", Name: "gt"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	n := a.app.count("timer", "Counter", "g1", "gt")
	time.Sleep(200 * time.Millisecond)
	if m := a.app.count("timer", "Counter", "g1", "gt"); m != n {
		t.Fatalf("timer fired %d times after UnregisterActorTimer", m-n)
	}

	// Errors, with daprd's gRPC codes.
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"invalid actor id", func() error {
			_, err := a.Dapr.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Counter", ActorId: "a/b", Method: "incr"})
			return err
		}, codes.InvalidArgument, "actorId"},
		{"app failure", func() error {
			_, err := a.Dapr.InvokeActor(ctx, &runtimev1.InvokeActorRequest{ActorType: "Counter", ActorId: "g1", Method: "fail"})
			return err
		}, codes.Internal, "boom"},
		{"bad operation", func() error {
			_, err := a.Dapr.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Counter", ActorId: "g1",
				Operations: []*runtimev1.TransactionalActorStateOperation{{OperationType: "merge", Key: "k"}}})
			return err
		}, codes.Unimplemented, "merge"},
		{"inactive actor", func() error {
			_, err := a.Dapr.ExecuteActorStateTransaction(ctx, &runtimev1.ExecuteActorStateTransactionRequest{ActorType: "Counter", ActorId: "cold",
				Operations: []*runtimev1.TransactionalActorStateOperation{{OperationType: "upsert", Key: "k", Value: &anypb.Any{Value: []byte("1")}}}})
			return err
		}, codes.Internal, "actor instance is missing"},
		{"reminder of a type not hosted", func() error {
			_, err := a.Dapr.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Nope", ActorId: "1", Name: "r", Period: "1s"})
			return err
		}, codes.PermissionDenied, "hosted"},
		{"empty reminder name", func() error {
			_, err := a.Dapr.RegisterActorReminder(ctx, &runtimev1.RegisterActorReminderRequest{ActorType: "Counter", ActorId: "1", Period: "1s"})
			return err
		}, codes.InvalidArgument, "reminder name"},
		{"bad timer due time", func() error {
			_, err := a.Dapr.RegisterActorTimer(ctx, &runtimev1.RegisterActorTimerRequest{ActorType: "Counter", ActorId: "g1", Name: "t", DueTime: "tomorrow"})
			return err
		}, codes.Internal, "due time"},
	} {
		err := tc.call()
		if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.code, tc.msg)
		}
	}

	// Metadata over gRPC.
	md, err := a.Dapr.GetMetadata(ctx, &runtimev1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ar := md.GetActorRuntime()
	if ar.GetRuntimeStatus() != runtimev1.ActorRuntime_RUNNING || !ar.GetHostReady() || ar.GetPlacement() != "placement: connected" || len(ar.GetActiveActors()) == 0 {
		t.Fatalf("GetMetadata actor runtime %v", ar)
	}
	if v := md.GetExtendedMetadata()["mecha.placementTableVersion"]; v != fmt.Sprint(c.Version()) {
		t.Fatalf("extended mecha.placementTableVersion = %q, want %d", v, c.Version())
	}
}
