package cfgstores

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Delivery is one configuration update an HTTP app received.
type Delivery struct {
	Path        string
	ContentType string
	Body        []byte
	// ID and Items are the decoded body.
	ID    string
	Items map[string]struct {
		Value    string            `json:"value"`
		Version  string            `json:"version"`
		Metadata map[string]string `json:"metadata"`
	}
}

// App is a fake HTTP app on 127.0.0.1 that records the configuration
// updates the sidecar POSTs to it.
type App struct {
	Port int
	// Status is what the app answers (default 200).
	Status atomic.Int32

	srv     *httptest.Server
	mu      sync.Mutex
	got     []Delivery
	read    int
	changed chan struct{}
}

// NewApp starts a fake app, stopped when the test ends.
func NewApp(t testing.TB) *App {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, l)
}

// NewAppOn starts a fake app on a given port of 127.0.0.1 (to start an app
// after its sidecar).
func NewAppOn(t testing.TB, port int) *App {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	return serveApp(t, l)
}

func serveApp(t testing.TB, l net.Listener) *App {
	a := &App{changed: make(chan struct{}), Port: l.Addr().(*net.TCPAddr).Port}
	a.Status.Store(http.StatusOK)
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.Listener.Close()
	a.srv.Listener = l
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

func (a *App) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/configuration/") {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	d := Delivery{Path: r.URL.EscapedPath(), ContentType: r.Header.Get("Content-Type"), Body: body}
	_ = json.Unmarshal(body, &d)
	a.mu.Lock()
	a.got = append(a.got, d)
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	w.WriteHeader(int(a.Status.Load()))
}

// Count is the number of deliveries so far.
func (a *App) Count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

// All returns every delivery so far.
func (a *App) All() []Delivery {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Delivery(nil), a.got...)
}

// Next returns the next unread delivery for which match is true (nil
// matches everything), skipping the others, failing after d.
func (a *App) Next(t testing.TB, d time.Duration, match func(Delivery) bool) Delivery {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		a.mu.Lock()
		for a.read < len(a.got) {
			got := a.got[a.read]
			a.read++
			if match == nil || match(got) {
				a.mu.Unlock()
				return got
			}
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("the app received no matching configuration update within %v (received: %d)", d, a.Count())
		}
	}
}

// For matches deliveries of subscription id.
func For(id string) func(Delivery) bool {
	return func(d Delivery) bool { return d.ID == id }
}
