package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
)

// The subscriber app of the pub/sub scenarios (`mecha bench subscriber`).
// It answers GET /dapr/subscribe with its subscriptions (one route per
// pubsub, /events/PUBSUB), and records, for every event delivered there,
// the time it arrived next to the publish time the event carries (see
// benchEvent). The load generator reads what it recorded over HTTP:
//
//	GET /bench/count?run=R     {"received":N,"duplicates":D,"malformed":M}
//	GET /bench/samples?run=R   the same plus "sent" and "recv" (Unix ns)
//	GET /bench/progress?run=R  a stream of lines, the received count, at
//	                           most one a millisecond while it changes
//
// It runs in a process of its own so that its CPU is measured apart and
// the load generator's garbage collector does not delay deliveries.

// subscriberRoute is the path prefix of the event routes.
const subscriberRoute = "/events/"

// benchEvent is the data of every event the pub/sub scenarios publish:
// the run it belongs to, a sequence number unique in the run, and when it
// was published (its due time at a fixed rate, else when it was sent), in
// Unix nanoseconds of the wall clock, which the subscriber, another
// process of the same machine, compares with its own.
type benchEvent struct {
	Run string `json:"run"`
	Seq int64  `json:"seq"`
	T   int64  `json:"t"`
}

// minEventSize is the smallest --body-size of the pub/sub scenarios: the
// event's fields must fit.
const minEventSize = 128

// appendEvent appends the JSON of an event to b, padded with a "pad"
// string so that it is size bytes long (when the fields leave room).
func appendEvent(b []byte, run string, seq, t int64, size int) []byte {
	start := len(b)
	b = append(b, `{"run":"`...)
	b = append(b, run...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"pad":"`...)
	for n := size - (len(b) - start) - 2; n > 0; n-- {
		b = append(b, 'a')
	}
	return append(b, `"}`...)
}

// subSpec is one subscription of the subscriber app.
type subSpec struct {
	Pubsub string `json:"pubsubname"`
	Topic  string `json:"topic"`
	Route  string `json:"route"`
}

// parseSubSpecs reads PUBSUB=TOPIC flags.
func parseSubSpecs(specs []string) ([]subSpec, error) {
	var out []subSpec
	for _, s := range specs {
		p, t, ok := strings.Cut(s, "=")
		p, t = strings.TrimSpace(p), strings.TrimSpace(t)
		if !ok || p == "" || t == "" || strings.ContainsAny(p, "/?#") {
			return nil, fmt.Errorf("--subscribe %q: want PUBSUB=TOPIC", s)
		}
		out = append(out, subSpec{Pubsub: p, Topic: t, Route: subscriberRoute + p})
	}
	if len(out) == 0 {
		return nil, errors.New("at least one --subscribe PUBSUB=TOPIC is required")
	}
	return out, nil
}

// runRecord is what the subscriber recorded for one run: for each
// distinct event, its publish and arrival times.
type runRecord struct {
	seen       map[int64]struct{}
	sent, recv []int64
	dups       int
	// listeners are poked (without blocking) on every new event.
	listeners map[chan struct{}]struct{}
}

// subscriberApp is the app's state.
type subscriberApp struct {
	subs []subSpec

	mu        sync.Mutex
	runs      map[string]*runRecord
	malformed atomic.Int64
}

func newSubscriberApp(subs []subSpec) *subscriberApp {
	return &subscriberApp{subs: subs, runs: map[string]*runRecord{}}
}

func (a *subscriberApp) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.subs)
	})
	mux.HandleFunc("POST "+subscriberRoute+"{pubsub}", a.event)
	mux.HandleFunc("GET /bench/count", func(w http.ResponseWriter, r *http.Request) {
		writeSubJSON(w, a.stats(r.URL.Query().Get("run"), false))
	})
	mux.HandleFunc("GET /bench/samples", func(w http.ResponseWriter, r *http.Request) {
		writeSubJSON(w, a.stats(r.URL.Query().Get("run"), true))
	})
	mux.HandleFunc("GET /bench/progress", a.progress)
	return mux
}

func writeSubJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// record returns run's record, creating it. a.mu must be held.
func (a *subscriberApp) record(run string) *runRecord {
	rec := a.runs[run]
	if rec == nil {
		rec = &runRecord{seen: map[int64]struct{}{}, listeners: map[chan struct{}]struct{}{}}
		a.runs[run] = rec
	}
	return rec
}

// event records one delivery and acknowledges it (200, empty body). An
// event that is not a bench event is counted as malformed and
// acknowledged too: retrying it would not make it one.
func (a *subscriberApp) event(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UnixNano()
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var ce struct {
		Data benchEvent `json:"data"`
	}
	if err != nil || json.Unmarshal(body, &ce) != nil || ce.Data.Run == "" {
		a.malformed.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	a.mu.Lock()
	rec := a.record(ce.Data.Run)
	if _, dup := rec.seen[ce.Data.Seq]; dup {
		rec.dups++
	} else {
		rec.seen[ce.Data.Seq] = struct{}{}
		rec.sent = append(rec.sent, ce.Data.T)
		rec.recv = append(rec.recv, now)
		for ch := range rec.listeners {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	a.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// subStats is the answer of /bench/count and /bench/samples.
type subStats struct {
	Received   int     `json:"received"`
	Duplicates int     `json:"duplicates"`
	Malformed  int64   `json:"malformed"`
	Sent       []int64 `json:"sent,omitempty"`
	Recv       []int64 `json:"recv,omitempty"`
}

func (a *subscriberApp) stats(run string, samples bool) subStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := subStats{Malformed: a.malformed.Load()}
	if rec := a.runs[run]; rec != nil {
		st.Received, st.Duplicates = len(rec.sent), rec.dups
		if samples {
			st.Sent, st.Recv = append([]int64(nil), rec.sent...), append([]int64(nil), rec.recv...)
		}
	}
	return st
}

// progressInterval is the least time between two lines of a progress
// stream: a burst of deliveries is one line.
const progressInterval = time.Millisecond

// progress streams run's received count, one line each time it changed,
// until the client goes.
func (a *subscriberApp) progress(w http.ResponseWriter, r *http.Request) {
	run := r.URL.Query().Get("run")
	fl, ok := w.(http.Flusher)
	if !ok || run == "" {
		http.Error(w, "need ?run= and a flushable connection", http.StatusBadRequest)
		return
	}
	ch := make(chan struct{}, 1)
	a.mu.Lock()
	a.record(run).listeners[ch] = struct{}{}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.runs[run].listeners, ch)
		a.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	last := -1
	var buf []byte
	for {
		a.mu.Lock()
		n := len(a.runs[run].sent)
		a.mu.Unlock()
		if n != last {
			buf = strconv.AppendInt(buf[:0], int64(n), 10)
			buf = append(buf, '\n')
			if _, err := w.Write(buf); err != nil {
				return
			}
			fl.Flush()
			last = n
		}
		select {
		case <-r.Context().Done():
			return
		case <-ch:
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(progressInterval):
		}
	}
}

// subscriberServer is a running subscriberApp.
type subscriberServer struct {
	Addr string
	srv  *http.Server
	done chan error
}

// serveSubscriber starts the app on addr (host:port; port 0 picks one).
func serveSubscriber(addr string, subs []subSpec) (*subscriberServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &subscriberServer{
		Addr: l.Addr().String(),
		srv:  &http.Server{Handler: newSubscriberApp(subs).handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute},
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Close stops the server (progress streams included) and returns its
// serving error.
func (s *subscriberServer) Close() error {
	_ = s.srv.Close()
	return <-s.done
}

// subscriberLinePrefix starts the first line `mecha bench subscriber`
// prints.
const subscriberLinePrefix = "http "

func subscriberCommand() *cobra.Command {
	var host string
	var port int
	var specs []string
	cmd := &cobra.Command{
		Use:   "subscriber --subscribe PUBSUB=TOPIC [--subscribe ...]",
		Short: "Run the subscriber app of the pub/sub scenarios (records each event's publish-to-arrival time)",
		Long: `Serve the app the pub/sub scenarios deliver to, over HTTP/1.1: GET
/dapr/subscribe lists one subscription per --subscribe PUBSUB=TOPIC (route
/events/PUBSUB), and every event delivered there is acknowledged (200) and
recorded with its arrival time; "mecha bench publish --subscriber HOST:PORT"
reads the records. The first line of stdout is "http HOST:PORT". Runs until
Ctrl-C or SIGTERM. Put a sidecar (mecha or daprd) in front of it with
--app-port PORT to measure its end-to-end latency.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			subs, err := parseSubSpecs(specs)
			if err != nil {
				return err
			}
			if port < 0 || port > 65535 {
				return fmt.Errorf("--port %d is not a port", port)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			s, err := serveSubscriber(net.JoinHostPort(host, strconv.Itoa(port)), subs)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), subscriberLinePrefix+s.Addr)
			<-ctx.Done()
			return s.Close()
		},
	}
	cmd.Flags().StringVar(&host, "listen", "127.0.0.1", "address to listen on")
	cmd.Flags().IntVar(&port, "port", 0, "port to listen on (0: a free one)")
	cmd.Flags().StringArrayVar(&specs, "subscribe", nil, "PUBSUB=TOPIC to subscribe to (repeatable)")
	return cmd
}

// startSubscriber execs `mecha bench subscriber` from bin and returns the
// process and its address. The caller must call Stop.
func startSubscriber(ctx context.Context, bin, logDir string, subs []string, env []string) (*sidecarProc, string, error) {
	args := []string{"bench", "subscriber"}
	for _, s := range subs {
		args = append(args, "--subscribe", s)
	}
	p, line, err := startLineProc(ctx, "subscriber", bin, args, logDir, env)
	if err != nil {
		return nil, "", err
	}
	addr, ok := strings.CutPrefix(line, subscriberLinePrefix)
	if !ok {
		_ = p.Stop()
		return nil, "", fmt.Errorf("unexpected first line from the subscriber: %q", line)
	}
	return p, addr, nil
}

// subscriberClient reads a subscriber app's records.
type subscriberClient struct {
	base   string
	client *http.Client
}

func newSubscriberClient(addr string) *subscriberClient {
	return &subscriberClient{
		base:   "http://" + addr,
		client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 4}},
	}
}

func (c *subscriberClient) Close() { c.client.CloseIdleConnections() }

func (c *subscriberClient) get(ctx context.Context, path, run string) (subStats, error) {
	var st subStats
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, c.base+path+"?run="+url.QueryEscape(run), nil)
	if err != nil {
		return st, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("subscriber: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("subscriber %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("subscriber %s: %w", path, err)
	}
	if len(st.Sent) != len(st.Recv) {
		return st, fmt.Errorf("subscriber %s: %d publish times for %d arrivals", path, len(st.Sent), len(st.Recv))
	}
	return st, nil
}

// count is how many distinct events of run the subscriber received.
func (c *subscriberClient) count(ctx context.Context, run string) (subStats, error) {
	return c.get(ctx, "/bench/count", run)
}

// samples are the publish and arrival times of every distinct event of
// run.
func (c *subscriberClient) samples(ctx context.Context, run string) (subStats, error) {
	return c.get(ctx, "/bench/samples", run)
}

// waitCount polls until the subscriber has received want distinct events
// of run, or stall passes without one more arriving. It returns the last
// count.
func (c *subscriberClient) waitCount(ctx context.Context, run string, want int, stall time.Duration) (int, error) {
	last, lastChange := -1, time.Now()
	for {
		st, err := c.count(ctx, run)
		if err != nil {
			return last, err
		}
		if st.Received >= want {
			return st.Received, nil
		}
		if st.Received != last {
			last, lastChange = st.Received, time.Now()
		} else if time.Since(lastChange) > stall {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// backlogGate holds publishers back while too many of their events are
// published but not yet delivered, so that a closed-loop run measures the
// rate at which events get through rather than how fast an unbounded
// queue in the broker fills. The delivered count comes from the
// subscriber's progress stream.
type backlogGate struct {
	max       int64
	delivered atomic.Int64
	cancel    context.CancelFunc
	ended     chan struct{}

	mu   sync.Mutex
	cond *sync.Cond
	done bool
	err  error
}

// follow opens run's progress stream and returns a gate that lets event
// seq (numbered from 0) be published once fewer than max events before
// it are undelivered. stop closes it.
func (c *subscriberClient) follow(ctx context.Context, run string, max int) (*backlogGate, error) {
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, c.base+"/bench/progress?run="+url.QueryEscape(run), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscriber progress: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("subscriber progress: HTTP %d", resp.StatusCode)
	}
	g := &backlogGate{max: int64(max), cancel: cancel, ended: make(chan struct{})}
	g.cond = sync.NewCond(&g.mu)
	go func() {
		defer close(g.ended)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			n, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				g.finish(fmt.Errorf("subscriber progress: %q is not a count", sc.Text()))
				return
			}
			g.delivered.Store(n)
			g.mu.Lock()
			g.cond.Broadcast()
			g.mu.Unlock()
		}
		err := sc.Err()
		if err == nil {
			err = io.EOF
		}
		g.finish(fmt.Errorf("subscriber progress stream ended: %w", err))
	}()
	return g, nil
}

func (g *backlogGate) finish(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.done, g.err = true, err
	g.cond.Broadcast()
}

// wait returns once event seq may be published, or with an error when
// ctx ends or the progress stream does.
func (g *backlogGate) wait(ctx context.Context, seq int64) error {
	if seq-g.delivered.Load() < g.max {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for seq-g.delivered.Load() >= g.max {
		if err := ctx.Err(); err != nil {
			return err
		}
		if g.done {
			return g.err
		}
		g.cond.Wait()
	}
	return nil
}

// stop closes the progress stream and waits for its reader.
func (g *backlogGate) stop() {
	g.cancel()
	<-g.ended
}
