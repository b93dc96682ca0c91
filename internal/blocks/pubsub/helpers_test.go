package pubsub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// waitFor is the deadline of eventual conditions.
const waitFor = 10 * time.Second

// inMemory is a pubsub.in-memory component named name. Every in-memory
// component of a test shares one bus, so sidecars of the test reach each
// other through it; a fast redelivery keeps retry tests short.
func inMemory(t testing.TB, name string, kv ...string) string {
	bus := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return mechatest.Component(name, "pubsub.in-memory", append([]string{
		"bus", bus, "backOffInitialInterval", "20ms", "backOffMaxInterval", "100ms",
	}, kv...)...)
}

// delivery is one request an HTTP app received.
type delivery struct {
	Path   string
	Header http.Header
	Body   []byte
}

// CE decodes the body as a CloudEvent.
func (d delivery) CE(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.Body, &m); err != nil {
		t.Fatalf("delivery to %s is not JSON: %v: %s", d.Path, err, d.Body)
	}
	return m
}

// subApp is an HTTP app that subscribes programmatically (its answer to
// GET /dapr/subscribe) and records what it is sent. answer, when set,
// decides the status and body of each delivery.
type subApp struct {
	subscribe string // the /dapr/subscribe body; "" answers 404
	mu        sync.Mutex
	got       []delivery
	answer    func(d delivery, n int) (int, string) // n counts deliveries to d.Path, from 1
	counts    map[string]int
	notify    chan struct{}
}

func newSubApp(subscribe string) *subApp {
	return &subApp{subscribe: subscribe, counts: map[string]int{}, notify: make(chan struct{}, 1)}
}

func (a *subApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe" {
		if a.subscribe == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, a.subscribe)
		return
	}
	body, _ := io.ReadAll(r.Body)
	d := delivery{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	a.mu.Lock()
	a.counts[d.Path]++
	n := a.counts[d.Path]
	a.got = append(a.got, d)
	answer := a.answer
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
	status, out := http.StatusOK, ""
	if answer != nil {
		status, out = answer(d, n)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, out)
}

// deliveries returns a copy of what the app got, optionally only to path.
func (a *subApp) deliveries(path string) []delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []delivery
	for _, d := range a.got {
		if path == "" || d.Path == path {
			out = append(out, d)
		}
	}
	return out
}

// waitN waits until the app got at least n deliveries to path.
func (a *subApp) waitN(t testing.TB, path string, n int) []delivery {
	t.Helper()
	var got []delivery
	mechatest.Eventually(t, waitFor, func() error {
		got = a.deliveries(path)
		if len(got) < n {
			return fmt.Errorf("%d deliveries to %s, want %d", len(got), path, n)
		}
		return nil
	})
	return got
}

// subscribeJSON is one /dapr/subscribe entry.
func subscribeJSON(entries ...map[string]any) string {
	b, err := json.Marshal(entries)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// start runs a sidecar for app id with an HTTP app (port 0: none).
func start(t *testing.T, id string, port int, protocol string, resources ...string) *mechatest.Sidecar {
	t.Helper()
	return mechatest.Start(t, func(o *runtime.Options) {
		o.AppID = id
		if port != 0 {
			o.AppPort, o.AppProtocol = port, protocol
		}
	}, resources...)
}

// publish publishes over HTTP and checks for 204.
func publish(t testing.TB, s *mechatest.Sidecar, pubsubName, topic string, body any, headers ...string) {
	t.Helper()
	resp := s.Do(t, http.MethodPost, "/v1.0/publish/"+pubsubName+"/"+topic, body, headers...)
	if resp.Status != http.StatusNoContent {
		t.Fatalf("publish to %s/%s: status %d: %s", pubsubName, topic, resp.Status, resp.Body)
	}
}

// subscribed waits until the sidecar's metadata lists n subscriptions, so
// that a test publishes only once the subscriber is in place.
func subscribed(t testing.TB, s *mechatest.Sidecar, n int) []map[string]any {
	t.Helper()
	var subs []map[string]any
	mechatest.Eventually(t, waitFor, func() error {
		var m struct {
			Subscriptions []map[string]any `json:"subscriptions"`
		}
		s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &m)
		subs = m.Subscriptions
		if len(subs) < n {
			return fmt.Errorf("%d subscriptions, want %d", len(subs), n)
		}
		return nil
	})
	return subs
}

// ctxT is a context bounded by the test.
func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
