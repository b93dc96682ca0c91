// Command actorapp is the actor app of the SDK suite's cluster tests
// (actors_cluster_test.go): a Dapr Go SDK actor service run as its own
// process, one per sidecar, because the SDK's actor runtime and default
// client are process singletons bound to one sidecar (DAPR_GRPC_PORT).
//
// It hosts the actor type ClusterCounter: a counter kept with the SDK's
// state manager, a method that answers which process runs it, methods that
// register an SDK timer and a reminder through the process's own sidecar,
// and a method that calls actors (itself included) back through the
// sidecar, forwarding the Dapr-Reentrancy-Id of the call it serves.
//
// It reports what the tests cannot see from the outside to a collector
// (ACTORAPP_COLLECTOR, POST of one JSON event): the first call an actor
// gets in this process (an activation), the sidecar's DELETE (a
// deactivation), and every timer and reminder firing, each tagged with
// this process's name (ACTORAPP_NAME).
//
// Environment:
//
//	APP_PORT            the port to serve the app on, on 127.0.0.1
//	DAPR_GRPC_PORT      the sidecar's gRPC port (read by the SDK)
//	ACTORAPP_NAME       this process's name in reports and answers
//	ACTORAPP_COLLECTOR  the collector URL
//	ACTORAPP_CONFIG     JSON object merged into the SDK's GET /dapr/config
//	                    answer (actorIdleTimeout, reentrancy …), which the
//	                    SDK cannot set itself
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/dapr/go-sdk/actor"
	"github.com/dapr/go-sdk/actor/runtime"
	dapr "github.com/dapr/go-sdk/client"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"
)

// ActorType is the actor type the app hosts.
const ActorType = "ClusterCounter"

// reentrancyHeader is the header the sidecar names a call chain with.
const reentrancyHeader = "Dapr-Reentrancy-Id"

// nestedCallTimeout bounds a call Reenter makes, so that a call that
// cannot get the actor's turn (no reentrancy) fails instead of hanging.
const nestedCallTimeout = 1500 * time.Millisecond

var (
	name      = os.Getenv("ACTORAPP_NAME")
	collector = os.Getenv("ACTORAPP_COLLECTOR")
	reporter  = &http.Client{Timeout: 2 * time.Second}
)

// Event is one report to the collector.
type Event struct {
	App  string `json:"app"`
	Kind string `json:"kind"` // activate, deactivate, timer, reminder
	Type string `json:"type"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// report posts an event to the collector, synchronously, so that the
// collector has it before the sidecar gets the answer to the call.
func report(kind, typ, id, what string) {
	if collector == "" {
		return
	}
	b, _ := json.Marshal(Event{App: name, Kind: kind, Type: typ, ID: id, Name: what})
	resp, err := reporter.Post(collector, "application/json", bytes.NewReader(b))
	if err != nil {
		log.Printf("reporting %s of %s/%s: %v", kind, typ, id, err)
		return
	}
	resp.Body.Close()
}

// ClusterCounter is the SDK actor.
type ClusterCounter struct {
	actor.ServerImplBaseCtx
}

// Type implements actor.ServerContext.
func (c *ClusterCounter) Type() string { return ActorType }

// Incr adds one to the counter kept in the actor's state.
func (c *ClusterCounter) Incr(ctx context.Context) (int, error) {
	n, err := c.Count(ctx)
	if err != nil {
		return 0, err
	}
	n++
	return n, c.GetStateManager().Set(ctx, "count", n)
}

// Count reads the counter (0 before the first Incr).
func (c *ClusterCounter) Count(ctx context.Context) (int, error) {
	sm := c.GetStateManager()
	ok, err := sm.Contains(ctx, "count")
	if err != nil || !ok {
		return 0, err
	}
	var n int
	err = sm.Get(ctx, "count", &n)
	return n, err
}

// Where answers the name of the process the actor runs in.
func (c *ClusterCounter) Where(context.Context) (string, error) { return name, nil }

// Schedule is the argument of StartTimer and StartReminder.
type Schedule struct {
	Name    string `json:"name"`
	DueTime string `json:"dueTime"`
	Period  string `json:"period"`
}

// StartTimer registers an SDK timer that calls Tick, through this
// process's sidecar (the actor's host, as the call came through it).
func (c *ClusterCounter) StartTimer(ctx context.Context, s Schedule) (string, error) {
	cl, err := dapr.NewClient()
	if err != nil {
		return "", err
	}
	return name, cl.RegisterActorTimer(ctx, &dapr.RegisterActorTimerRequest{
		ActorType: ActorType, ActorID: c.ID(), Name: s.Name, DueTime: s.DueTime, Period: s.Period, CallBack: "Tick",
	})
}

// Tick is the timer callback.
func (c *ClusterCounter) Tick(context.Context) error {
	report("timer", ActorType, c.ID(), "")
	return nil
}

// StartReminder registers a reminder through this process's sidecar.
func (c *ClusterCounter) StartReminder(ctx context.Context, s Schedule) (string, error) {
	cl, err := dapr.NewClient()
	if err != nil {
		return "", err
	}
	return name, cl.RegisterActorReminder(ctx, &dapr.RegisterActorReminderRequest{
		ActorType: ActorType, ActorID: c.ID(), Name: s.Name, DueTime: s.DueTime, Period: s.Period,
	})
}

// ReminderCall implements actor.ReminderCallee.
func (c *ClusterCounter) ReminderCall(reminder string, _ []byte, _, _ string) {
	report("reminder", ActorType, c.ID(), reminder)
}

// Hop is the argument of Reenter: the actor ids still to visit, and
// whether to pass the chain's Dapr-Reentrancy-Id on.
type Hop struct {
	Path    []string `json:"path"`
	Forward bool     `json:"forward"`
}

// Reenter calls Reenter on the next actor of the path through this
// process's sidecar (with the chain's reentrancy id when Forward) and
// answers the visited actors as "id@process", this one first. With
// reentrancy, a path that comes back to an actor of the chain succeeds;
// without the id, the call back waits for the turn the chain holds and
// fails after nestedCallTimeout.
func (c *ClusterCounter) Reenter(ctx context.Context, h Hop) ([]string, error) {
	here := c.ID() + "@" + name
	if len(h.Path) == 0 {
		return []string{here}, nil
	}
	cl, err := dapr.NewClient()
	if err != nil {
		return nil, err
	}
	next, err := json.Marshal(Hop{Path: h.Path[1:], Forward: h.Forward})
	if err != nil {
		return nil, err
	}
	req := &runtimev1.InvokeActorRequest{ActorType: ActorType, ActorId: h.Path[0], Method: "Reenter", Data: next}
	if rid, _ := ctx.Value(ridKey{}).(string); h.Forward && rid != "" {
		req.Metadata = map[string]string{reentrancyHeader: rid}
	}
	cctx, cancel := context.WithTimeout(ctx, nestedCallTimeout)
	defer cancel()
	resp, err := cl.GrpcClient().InvokeActor(cctx, req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", h.Path[0], err)
	}
	var rest []string
	if err := json.Unmarshal(resp.GetData(), &rest); err != nil {
		return nil, err
	}
	return append([]string{here}, rest...), nil
}

// ridKey carries the call's Dapr-Reentrancy-Id in its context: the SDK
// hands actor methods the request's context but not its headers.
type ridKey struct{}

// tracker watches the sidecar's calls to report activations and
// deactivations: the SDK has no hooks for them.
type tracker struct {
	mu     sync.Mutex
	active map[string]bool
}

func (tr *tracker) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/dapr/config" {
			serveConfig(w)
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) >= 3 && parts[0] == "actors" {
			typ, id := parts[1], parts[2]
			key := typ + "/" + id
			switch {
			case r.Method == http.MethodDelete && len(parts) == 3:
				tr.mu.Lock()
				was := tr.active[key]
				delete(tr.active, key)
				tr.mu.Unlock()
				if was {
					report("deactivate", typ, id, "")
				}
			case r.Method == http.MethodPut && len(parts) >= 5 && parts[3] == "method":
				tr.mu.Lock()
				first := !tr.active[key]
				tr.active[key] = true
				tr.mu.Unlock()
				if first {
					report("activate", typ, id, "")
				}
			}
			if rid := r.Header.Get(reentrancyHeader); rid != "" {
				r = r.WithContext(context.WithValue(r.Context(), ridKey{}, rid))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// serveConfig answers GET /dapr/config: the SDK's configuration (the
// registered entities) with ACTORAPP_CONFIG's fields merged in.
func serveConfig(w http.ResponseWriter) {
	sdk, err := runtime.GetActorRuntimeInstanceContext().GetJSONSerializedConfig()
	cfg := map[string]any{}
	if err == nil {
		err = json.Unmarshal(sdk, &cfg)
	}
	if extra := os.Getenv("ACTORAPP_CONFIG"); err == nil && extra != "" {
		err = json.Unmarshal([]byte(extra), &cfg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cfg)
}

func main() {
	log.SetPrefix("actorapp " + name + ": ")
	port := os.Getenv("APP_PORT")
	if port == "" || name == "" {
		log.Fatal("APP_PORT and ACTORAPP_NAME are required")
	}
	mux := chi.NewRouter()
	tr := &tracker{active: map[string]bool{}}
	mux.Use(tr.middleware)
	svc := daprhttp.NewServiceWithMux("127.0.0.1:"+port, mux)
	svc.RegisterActorImplFactoryContext(func() actor.ServerContext { return &ClusterCounter{} })

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- svc.Start() }()
	select {
	case err := <-served:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	case <-ctx.Done():
		_ = svc.GracefulStop()
		<-served
	}
}
