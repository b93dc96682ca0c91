package pubsub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// natsServer is a nats-server with JetStream in this process, on a fixed
// port and store directory so that it can be stopped and started again
// where its clients expect it.
type natsServer struct {
	t     testing.TB
	port  int
	store string

	mu sync.Mutex
	ns *server.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &natsServer{t: t, port: port, store: t.TempDir()}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// start starts a server on the port and store; a port still held by the
// previous server's socket is tried again for a few seconds.
func (s *natsServer) start() error {
	var last error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ns, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: s.port, JetStream: true, StoreDir: s.store,
			NoSigs: true, NoLog: true,
		})
		if err != nil {
			return err
		}
		ns.Start()
		if ns.ReadyForConnections(5*time.Second) && ns.JetStreamEnabled() {
			s.mu.Lock()
			s.ns = ns
			s.mu.Unlock()
			return nil
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		last = fmt.Errorf("nats-server on port %d did not become ready", s.port)
	}
	return last
}

// stop shuts the running server down gracefully (JetStream writes its
// state out), if one runs.
func (s *natsServer) stop() {
	s.mu.Lock()
	ns := s.ns
	s.ns = nil
	s.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

// seqApp is a subscriber app that counts the deliveries of each sequence
// number (the event data is {"seq": n}).
type seqApp struct {
	subscribe string
	mu        sync.Mutex
	seen      map[int]int
	bad       []string
}

func (a *seqApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, a.subscribe)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var ce struct {
		Data struct {
			Seq *int `json:"seq"`
		} `json:"data"`
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := json.Unmarshal(body, &ce); err != nil || ce.Data.Seq == nil {
		a.bad = append(a.bad, string(body))
		w.WriteHeader(http.StatusOK) // nothing to retry: it would come back the same
		return
	}
	a.seen[*ce.Data.Seq]++
	w.WriteHeader(http.StatusOK)
}

// counts returns how many distinct sequence numbers arrived, and how many
// deliveries there were in all.
func (a *seqApp) counts() (distinct, total int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.seen {
		total += n
	}
	return len(a.seen), total
}

// TestBrokerRestartMidPublish publishes 10,000 events through a sidecar
// with concurrent publishers while the NATS server behind its
// pubsub.jetstream component is stopped (after about 3,000) and started
// again on the same port and store about 1.5s later. Publishers retry a
// publish that failed, as an app would; every event must reach the
// subscriber of another sidecar at least once.
func TestBrokerRestartMidPublish(t *testing.T) {
	const (
		total      = 10_000
		restartAt  = 3_000
		publishers = 8
		downFor    = 1500 * time.Millisecond
	)
	nats := startNATS(t)
	// ackWait 2s: a delivery whose ack the restart swallowed comes back
	// within the test's budget rather than after the default 30s.
	comp := mechatest.Component("pubsub", "pubsub.jetstream", "natsURL", nats.url(), "ackWait", "2s")
	app := &seqApp{
		subscribe: subscribeJSON(map[string]any{"pubsubname": "pubsub", "topic": "seq", "route": "/seq"}),
		seen:      map[int]int{},
	}
	sub := start(t, "restart-sub", mechatest.HTTPApp(t, app), "http", comp)
	pub := start(t, "restart-pub", 0, "", comp)
	subscribed(t, sub, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 20 * time.Second}
	url := pub.URL + "/v1.0/publish/pubsub/seq"
	var (
		next       atomic.Int64 // the next sequence number to publish
		published  atomic.Int64 // publishes answered 204
		errStatus  atomic.Int64 // publishes answered with an error status
		errNetwork atomic.Int64 // publishes that got no answer
		reached    = make(chan struct{})
		reachOnce  sync.Once
		failed     atomic.Value
		slowest    atomic.Int64 // the longest single publish request, in ns
	)
	publishOne := func(seq int) error {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(fmt.Appendf(nil, `{"seq":%d}`, seq)))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := client.Do(req)
			for took := int64(time.Since(t0)); ; {
				if cur := slowest.Load(); took <= cur || slowest.CompareAndSwap(cur, took) {
					break
				}
			}
			switch {
			case err != nil:
				errNetwork.Add(1)
			case resp.StatusCode == http.StatusNoContent:
				resp.Body.Close()
				return nil
			default:
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if n := errStatus.Add(1); n <= 3 {
					t.Logf("publish %d: %d %s (retrying)", seq, resp.StatusCode, b)
				}
			}
			if ctx.Err() != nil {
				return fmt.Errorf("publish %d: gave up: %w", seq, ctx.Err())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	begin := time.Now()
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for {
				seq := int(next.Add(1)) - 1
				if seq >= total {
					return
				}
				if err := publishOne(seq); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				if published.Add(1) == restartAt {
					reachOnce.Do(func() { close(reached) })
				}
			}
		})
	}
	var restartErr error
	var stoppedAt, restartedAt time.Duration
	var publishedAtRestart int64
	wg.Go(func() {
		select {
		case <-reached:
		case <-ctx.Done():
			return
		}
		nats.stop()
		stoppedAt = time.Since(begin)
		time.Sleep(downFor)
		restartErr = nats.start()
		restartedAt = time.Since(begin)
		publishedAtRestart = published.Load()
	})
	wg.Wait()
	if restartErr != nil {
		t.Fatalf("restarting the NATS server: %v", restartErr)
	}
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	if restartedAt == 0 {
		t.Fatal("the NATS server was never restarted")
	}
	if publishedAtRestart >= total {
		t.Fatalf("all %d events were published before the server came back: the restart was not in the middle", total)
	}
	publishedIn := time.Since(begin)

	mechatest.Eventually(t, 45*time.Second, func() error {
		if d, _ := app.counts(); d < total {
			return fmt.Errorf("%d of %d events delivered", d, total)
		}
		return nil
	})
	distinct, deliveries := app.counts()
	app.mu.Lock()
	var missing []int
	for seq := range total {
		if app.seen[seq] == 0 {
			missing = append(missing, seq)
		}
	}
	bad := app.bad
	app.mu.Unlock()
	if len(missing) > 0 || distinct != total {
		t.Errorf("%d distinct events delivered, want %d; missing (first 20): %v", distinct, total, missing[:min(20, len(missing))])
	}
	if len(bad) > 0 {
		t.Errorf("%d deliveries without a sequence number, e.g. %s", len(bad), bad[0])
	}
	t.Logf("%d events published in %v (server stopped at %v, back at %v with %d published); %d error statuses and %d failed requests retried, slowest request %v; "+
		"%d deliveries of %d distinct events (%d duplicates) after %v",
		total, publishedIn.Round(time.Millisecond), stoppedAt.Round(time.Millisecond), restartedAt.Round(time.Millisecond), publishedAtRestart,
		errStatus.Load(), errNetwork.Load(), time.Duration(slowest.Load()).Round(time.Millisecond), deliveries, distinct, deliveries-distinct, time.Since(begin).Round(time.Millisecond))
}
