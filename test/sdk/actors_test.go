package sdk

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dapr/go-sdk/actor"
	"github.com/dapr/go-sdk/client"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const sdkActorType = "SDKCounter"

// SDKCounter is an actor written with the Go SDK's actor package: a
// counter kept in actor state, and a reminder callee.
type SDKCounter struct {
	actor.ServerImplBaseCtx
	reminders *reminderLog
}

func (c *SDKCounter) Type() string { return sdkActorType }

// Incr adds one to the counter kept in the actor's state.
func (c *SDKCounter) Incr(ctx context.Context) (int, error) {
	n, err := c.Count(ctx)
	if err != nil {
		return 0, err
	}
	n++
	return n, c.GetStateManager().Set(ctx, "count", n)
}

// Count reads the counter.
func (c *SDKCounter) Count(ctx context.Context) (int, error) {
	sm := c.GetStateManager()
	ok, err := sm.Contains(ctx, "count")
	if err != nil || !ok {
		return 0, err
	}
	var n int
	err = sm.Get(ctx, "count", &n)
	return n, err
}

// ReminderCall implements actor.ReminderCallee.
func (c *SDKCounter) ReminderCall(name string, data []byte, dueTime, period string) {
	c.reminders.add(c.ID(), name, string(data), period)
}

type reminderLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *reminderLog) add(id, name, data, period string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, id+"/"+name+"/"+data+"/"+period)
}

func (l *reminderLog) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// startPlacement runs `mecha control-plane` as a standalone placement node
// on free ports and returns its address; it is stopped by PID when the
// test ends.
func startPlacement(t *testing.T) string {
	t.Helper()
	port, healthz := freePort(t), freePort(t)
	home := t.TempDir()
	cmd := exec.Command(mechaBin, "control-plane", "--placement-port", strconv.Itoa(port), "--healthz-port", strconv.Itoa(healthz))
	cmd.Dir = home
	cmd.Env = sidecarEnv(home)
	cp, err := startChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	out, exited := cp.out, cp.exited
	t.Cleanup(func() {
		cp.terminate(10 * time.Second)
		if t.Failed() {
			t.Logf("control plane output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := pollClient.Get("http://127.0.0.1:" + strconv.Itoa(healthz) + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "127.0.0.1:" + strconv.Itoa(port)
			}
		}
		select {
		case <-exited:
			t.Fatalf("the control plane exited:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not become healthy:\n%s", out.String())
		}
	}
}

// TestSDKActors runs an actor app built with the Go SDK behind a sidecar
// connected to a placement service, and drives it with the SDK client
// through another sidecar that hosts no actors: 100 concurrent increments
// of one actor end at exactly 100 (turn-based concurrency, state through
// the SDK's state manager), a reminder with R3/PT0.2S reaches the SDK's
// ReminderCall three times, and reminders of a type the sidecar does not
// host are refused with PermissionDenied.
func TestSDKActors(t *testing.T) {
	placementAddr := startPlacement(t)
	appPort := freePort(t)
	svc := daprhttp.NewService("127.0.0.1:" + strconv.Itoa(appPort))
	reminders := &reminderLog{}
	svc.RegisterActorImplFactoryContext(func() actor.ServerContext { return &SDKCounter{reminders: reminders} })
	serve(t, svc)
	store := componentYAML("statestore", "state.sqlite", map[string]string{
		"connectionString": filepath.Join(t.TempDir(), "actors.db"), "actorStateStore": "true",
	})
	host := startSidecar(t, sidecarConfig{
		Args:      []string{"--app-port", strconv.Itoa(appPort), "--placement-host-address", placementAddr},
		Resources: map[string]string{"statestore.yaml": store},
	})
	// The SDK's actor runtime talks to its sidecar through the process's
	// default client, which reads DAPR_GRPC_PORT once.
	t.Setenv("DAPR_GRPC_PORT", strconv.Itoa(host.GRPCPort))
	caller := startSidecar(t, sidecarConfig{Args: []string{"--placement-host-address", placementAddr}})
	for _, s := range []*sidecar{host, caller} {
		eventually(t, 20*time.Second, "the actor runtime of "+s.AppID, func() bool {
			var md struct {
				ActorRuntime struct {
					Status    string `json:"runtimeStatus"`
					HostReady bool   `json:"hostReady"`
				} `json:"actorRuntime"`
			}
			r := s.do(t, http.MethodGet, "/v1.0/metadata", nil)
			return json.Unmarshal(r.Body, &md) == nil && md.ActorRuntime.Status == "RUNNING" && md.ActorRuntime.HostReady
		})
	}
	c := caller.sdkClient(t)
	ctx := ctxT(t)
	// The first call may race the table that names the host.
	eventually(t, 20*time.Second, "a first actor call", func() bool {
		_, err := c.InvokeActor(ctx, &client.InvokeActorRequest{ActorType: sdkActorType, ActorID: "warmup", Method: "Count"})
		return err == nil
	})

	const callers = 100
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			if _, err := c.InvokeActor(ctx, &client.InvokeActorRequest{ActorType: sdkActorType, ActorID: "shared", Method: "Incr"}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("InvokeActor Incr: %v", err)
	}
	resp, err := c.InvokeActor(ctx, &client.InvokeActorRequest{ActorType: sdkActorType, ActorID: "shared", Method: "Count"})
	if err != nil || strings.TrimSpace(string(resp.Data)) != strconv.Itoa(callers) {
		t.Fatalf("Count after %d concurrent increments: %v %+v", callers, err, resp)
	}
	// The state is the actor's, in the actor state store, under Dapr's key
	// layout, readable through the API.
	st, err := host.sdkClient(t).GetActorState(ctx, &client.GetActorStateRequest{ActorType: sdkActorType, ActorID: "shared", KeyName: "count"})
	if err != nil || strings.TrimSpace(string(st.Data)) != strconv.Itoa(callers) {
		t.Fatalf("GetActorState: %v %+v", err, st)
	}

	hc := host.sdkClient(t)
	err = hc.RegisterActorReminder(ctx, &client.RegisterActorReminderRequest{
		ActorType: sdkActorType, ActorID: "shared", Name: "thrice", DueTime: "0s", Period: "R3/PT0.2S", Data: []byte(`"hello"`),
	})
	if err != nil {
		t.Fatalf("RegisterActorReminder: %v", err)
	}
	eventually(t, 10*time.Second, "three reminder calls", func() bool { return reminders.count("shared/thrice/") >= 3 })
	time.Sleep(700 * time.Millisecond)
	if n := reminders.count("shared/thrice/"); n != 3 {
		t.Fatalf("the reminder reached the SDK %d times, want 3: %v", n, reminders.calls)
	}
	err = c.RegisterActorReminder(ctx, &client.RegisterActorReminderRequest{ActorType: sdkActorType, ActorID: "shared", Name: "x", Period: "1s"})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("RegisterActorReminder through a sidecar that does not host the type: %v, want PermissionDenied", err)
	}
}
