package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// How a pub/sub scenario publishes.
const (
	// pubHTTP is POST /v1.0/publish/{pubsub}/{topic} on a sidecar.
	pubHTTP = "http"
	// pubGRPC is the Dapr gRPC API's PublishEvent on a sidecar.
	pubGRPC = "grpc"
	// pubRaw is nats.go's JetStream client (jetstream.Publish) straight to
	// the NATS server: the floor for any JetStream-backed publish.
	pubRaw = "raw"
)

// The components of the sidecar pubsub-all starts, named after their
// kind: pubsub.jetstream with the component's default concurrency (one
// delivery at a time, in stream order, unless --jetstream-concurrency),
// the same with concurrency "parallel", and pubsub.in-memory.
const (
	psJetStream         = "jetstream"
	psJetStreamParallel = "jetstream-parallel"
	psInMemory          = "in-memory"
)

// The topics: one nobody subscribes to, for the publish-only scenarios,
// and the subscriber app's. The two JetStream components subscribe to
// topics of their own: on one topic they would share its stream, and
// every event would be delivered twice.
const (
	topicPublish        = "bench-publish"
	topicEvents         = "bench-events"
	topicEventsParallel = "bench-events-parallel"
)

// The two ways a scenario loads the path.
const (
	// modeMax is closed loop: -c workers publish back to back.
	modeMax = "max"
	// modeRate is open loop at a fixed rate, each event stamped with its
	// due time, so that a stall counts for every event behind it.
	modeRate = "rate"
)

// eventContentType is the content type of every published event.
const eventContentType = "application/json"

// pubsubScenario is one pub/sub measurement.
type pubsubScenario struct {
	ID     string `json:"id"`
	Call   string `json:"call"`
	Pubsub string `json:"pubsub"`
	Mode   string `json:"mode"`
	Topic  string `json:"topic"`
	// Deliver means the subscriber app receives the events and the
	// publish → arrival latency and delivery rate are measured.
	Deliver bool   `json:"deliver"`
	Path    string `json:"path"`
}

// pubsubScenarios are what `pubsub-all` measures, in order.
var pubsubScenarios = []pubsubScenario{
	{ID: "publish-http", Call: pubHTTP, Pubsub: psJetStream, Topic: topicPublish, Mode: modeMax,
		Path: "client -> sidecar POST /v1.0/publish/jetstream/" + topicPublish + " -> NATS JetStream (no subscriber)"},
	{ID: "publish-grpc", Call: pubGRPC, Pubsub: psJetStream, Topic: topicPublish, Mode: modeMax,
		Path: "client -> sidecar gRPC PublishEvent -> NATS JetStream (no subscriber)"},
	{ID: "publish-raw", Call: pubRaw, Pubsub: psJetStream, Topic: topicPublish, Mode: modeMax,
		Path: "client -> nats.go jetstream.Publish -> NATS JetStream, same stream, one connection"},
	{ID: "e2e-jetstream", Call: pubHTTP, Pubsub: psJetStream, Topic: topicEvents, Mode: modeRate, Deliver: true,
		Path: "client POST /v1.0/publish at a fixed rate -> sidecar -> NATS JetStream -> sidecar -> app POST /events/jetstream"},
	{ID: "e2e-jetstream-parallel", Call: pubHTTP, Pubsub: psJetStreamParallel, Topic: topicEventsParallel, Mode: modeRate, Deliver: true,
		Path: "the same with pubsub.jetstream concurrency parallel (deliveries in parallel, not in stream order)"},
	{ID: "e2e-in-memory", Call: pubHTTP, Pubsub: psInMemory, Topic: topicEvents, Mode: modeRate, Deliver: true,
		Path: "client POST /v1.0/publish at a fixed rate -> sidecar (pubsub.in-memory) -> app POST /events/in-memory"},
	{ID: "deliver-max-in-memory", Call: pubHTTP, Pubsub: psInMemory, Topic: topicEvents, Mode: modeMax, Deliver: true,
		Path: "-c clients POST /v1.0/publish as fast as events get delivered -> sidecar (pubsub.in-memory) -> app"},
	{ID: "deliver-max-jetstream", Call: pubHTTP, Pubsub: psJetStream, Topic: topicEvents, Mode: modeMax, Deliver: true,
		Path: "-c clients POST /v1.0/publish as fast as events get delivered -> sidecar -> NATS JetStream -> sidecar -> app"},
	{ID: "deliver-max-jetstream-parallel", Call: pubHTTP, Pubsub: psJetStreamParallel, Topic: topicEventsParallel, Mode: modeMax, Deliver: true,
		Path: "the same with pubsub.jetstream concurrency parallel"},
}

func findPubsubScenario(id string) (pubsubScenario, bool) {
	for _, s := range pubsubScenarios {
		if s.ID == id {
			return s, true
		}
	}
	return pubsubScenario{}, false
}

// selectPubsubScenarios returns the scenarios named in ids
// (comma-separated; all when empty), in the canonical order; publish-raw
// brings the sidecar publishes it is compared with, and they bring it.
func selectPubsubScenarios(ids string) ([]pubsubScenario, error) {
	if strings.TrimSpace(ids) == "" {
		return pubsubScenarios, nil
	}
	want := map[string]bool{}
	for id := range strings.SplitSeq(ids, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if _, ok := findPubsubScenario(id); !ok {
			var all []string
			for _, s := range pubsubScenarios {
				all = append(all, s.ID)
			}
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", id, strings.Join(all, ", "))
		}
		want[id] = true
	}
	if want["publish-http"] || want["publish-grpc"] {
		want["publish-raw"] = true
	}
	var out []pubsubScenario
	for _, s := range pubsubScenarios {
		if want[s.ID] {
			out = append(out, s)
		}
	}
	return out, nil
}

// pubTarget is where a scenario publishes and who receives.
type pubTarget struct {
	Call string
	// Addr is the sidecar's HTTP or gRPC address, or the NATS URL (raw).
	Addr   string
	Pubsub string
	Topic  string
	// Subscriber is the subscriber app's address; empty: deliveries are
	// not measured.
	Subscriber string
}

// pubFunc publishes event seq of the worker's run, stamped t (Unix ns).
// Each worker has its own and calls it from one goroutine only.
type pubFunc func(ctx context.Context, seq, t int64) error

// publisher makes the workers of one target.
type publisher struct {
	// newWorker returns worker id's pubFunc for run.
	newWorker func(id int, run string) pubFunc
	close     func()
}

// newPublisher connects to t: an HTTP client with an idle connection per
// worker, one gRPC connection, or one NATS connection (for raw, the
// topic's stream is created if no stream covers it, as the sidecar's
// component would).
func newPublisher(ctx context.Context, t pubTarget, size, workers int) (*publisher, error) {
	switch t.Call {
	case pubHTTP:
		client := newHTTPClient(workers)
		u := "http://" + t.Addr + "/v1.0/publish/" + url.PathEscape(t.Pubsub) + "/" + url.PathEscape(t.Topic)
		return &publisher{
			close: client.CloseIdleConnections,
			newWorker: func(_ int, run string) pubFunc {
				var payload []byte
				var buf bytes.Buffer
				return func(ctx context.Context, seq, ts int64) error {
					payload = appendEvent(payload[:0], run, seq, ts, size)
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
					if err != nil {
						return err
					}
					req.Header["Content-Type"] = []string{eventContentType}
					status, err := do(client, req, &buf)
					if err != nil {
						return err
					}
					if status != http.StatusNoContent {
						return fmt.Errorf("POST %s: HTTP %d, want 204: %.200s", u, status, buf.Bytes())
					}
					return nil
				}
			},
		}, nil
	case pubGRPC:
		conns, err := dialGRPC(t.Addr, 1)
		if err != nil {
			return nil, err
		}
		client := runtimev1.NewDaprClient(conns[0])
		return &publisher{
			close: func() { closeConns(conns) },
			newWorker: func(_ int, run string) pubFunc {
				req := &runtimev1.PublishEventRequest{PubsubName: t.Pubsub, Topic: t.Topic, DataContentType: eventContentType}
				var payload []byte
				return func(ctx context.Context, seq, ts int64) error {
					payload = appendEvent(payload[:0], run, seq, ts, size)
					req.Data = payload
					if _, err := client.PublishEvent(ctx, req); err != nil {
						return fmt.Errorf("PublishEvent: %w", err)
					}
					return nil
				}
			},
		}, nil
	case pubRaw:
		nc, err := nats.Connect(t.Addr, nats.Name("mecha bench (raw JetStream client)"), nats.Timeout(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", t.Addr, err)
		}
		js, err := jetstream.New(nc)
		if err == nil {
			err = ensureStream(ctx, js, t.Topic)
		}
		if err != nil {
			nc.Close()
			return nil, err
		}
		return &publisher{
			close: nc.Close,
			newWorker: func(_ int, run string) pubFunc {
				var payload []byte
				return func(ctx context.Context, seq, ts int64) error {
					payload = appendEvent(payload[:0], run, seq, ts, size)
					if _, err := js.Publish(ctx, t.Topic, payload); err != nil {
						return fmt.Errorf("jetstream.Publish: %w", err)
					}
					return nil
				}
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown publish call %q (http, grpc or raw)", t.Call)
}

// ensureStream makes sure a stream covers topic, creating one like the
// pubsub.jetstream component's (file storage, no limits) when none does.
func ensureStream(ctx context.Context, js jetstream.JetStream, topic string) error {
	_, err := js.StreamNameBySubject(ctx, topic)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("looking up the stream of %q: %w", topic, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld, MaxBytes: -1, MaxMsgs: -1, AllowMsgTTL: true,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating a stream for %q: %w", topic, err)
	}
	return nil
}

// pubsubOptions shape every scenario's measurement.
type pubsubOptions struct {
	BodySize int
	// Max is the closed-loop mode (Requests must be 0: runs are timed).
	Max loadOptions
	// Rate is the fixed-rate mode.
	Rate rateOptions
	// MaxBacklog bounds, in closed-loop runs with a subscriber, the events
	// published but not yet delivered (0: no bound).
	MaxBacklog int
	// DrainTimeout is how long to wait, once publishing stops, without a
	// single new delivery before the missing events are counted as lost.
	DrainTimeout time.Duration
	// profile, when set, is called as the measured run of a scenario
	// starts and returns nil or a function to call after it.
	profile func(ctx context.Context, s pubsubScenario) (done func())
}

func (o pubsubOptions) validate() error {
	var errs []error
	if o.BodySize < minEventSize || o.BodySize > 4<<20 {
		errs = append(errs, fmt.Errorf("--body-size %d must be between %d and 4194304", o.BodySize, minEventSize))
	}
	errs = append(errs, o.Max.validate(), o.Rate.validate())
	if o.Max.Requests != 0 {
		errs = append(errs, errors.New("--requests is not supported here: the pub/sub runs are timed (-d)"))
	}
	if o.MaxBacklog < 0 {
		errs = append(errs, fmt.Errorf("--max-backlog %d must not be negative", o.MaxBacklog))
	}
	if o.DrainTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--drain-timeout %v must be positive", o.DrainTimeout))
	}
	return errors.Join(errs...)
}

// pubsubPIDs are the processes whose CPU a scenario reports (0: not on
// the path, or unknown); the load generator is this process.
type pubsubPIDs struct{ sidecar, broker, app int }

// procMeter reads the CPU time of the load generator and of the given
// processes, and of the whole machine, around a run.
type procMeter struct {
	pids   []int
	before []float64
	ok     []bool
	busy0  float64
	busyOK bool
	t0     time.Time
}

func startProcMeter(pids ...int) *procMeter {
	m := &procMeter{pids: append([]int{os.Getpid()}, pids...), t0: time.Now()}
	m.before, m.ok = make([]float64, len(m.pids)), make([]bool, len(m.pids))
	for i, pid := range m.pids {
		if pid != 0 {
			m.before[i], m.ok[i] = procCPUSeconds(pid)
		}
	}
	m.busy0, m.busyOK = machineBusySeconds()
	return m
}

// stop returns the CPU seconds each process used (the load generator
// first; 0 when unknown) and the cores the rest of the machine used.
func (m *procMeter) stop() (used []float64, otherCores float64) {
	wall := time.Since(m.t0).Seconds()
	used = make([]float64, len(m.pids))
	known := 0.0
	for i, pid := range m.pids {
		if pid == 0 || !m.ok[i] {
			continue
		}
		if after, ok := procCPUSeconds(pid); ok {
			used[i] = after - m.before[i]
			known += used[i]
		}
	}
	if busy1, ok := machineBusySeconds(); ok && m.busyOK && wall > 0 {
		otherCores = max(0, (busy1-m.busy0-known)/wall)
	}
	return used, otherCores
}

// probeTimeout bounds the wait for a path to carry its first event.
const probeTimeout = 30 * time.Second

// waitPubsubReady publishes probe events (run probeRun) until one is
// accepted and, with a subscriber, until one is delivered: the
// subscriber's subscriptions are installed after the sidecar asks the app
// for them, and pubsub.in-memory drops events published to a topic nobody
// subscribes to yet.
func waitPubsubReady(ctx context.Context, f pubFunc, sub *subscriberClient, probeRun string) error {
	deadline := time.Now().Add(probeTimeout)
	var last error
	for seq := int64(0); ; seq++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx, seq, time.Now().UnixNano())
		cancel()
		if err == nil {
			if sub == nil {
				return nil
			}
			for until := time.Now().Add(time.Second); time.Now().Before(until); {
				st, err := sub.count(ctx, probeRun)
				if err != nil {
					return err
				}
				if st.Received > 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			err = errors.New("published, but nothing reached the subscriber")
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", probeTimeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runPubsub measures scenario s against t.
func runPubsub(ctx context.Context, s pubsubScenario, t pubTarget, p pubsubPIDs, o pubsubOptions, progress io.Writer) (PubsubResult, error) {
	res := PubsubResult{pubsubScenario: s}
	if err := o.validate(); err != nil {
		return res, err
	}
	workers := o.Max.Concurrency
	if s.Mode == modeRate {
		workers = o.Rate.Workers
	}
	pub, err := newPublisher(ctx, t, o.BodySize, workers)
	if err != nil {
		return res, fmt.Errorf("%s: %w", s.ID, err)
	}
	defer pub.close()
	var sub *subscriberClient
	if t.Subscriber != "" {
		sub = newSubscriberClient(t.Subscriber)
		defer sub.Close()
	}
	run := fmt.Sprintf("%s-%d-%d", s.ID, os.Getpid(), time.Now().UnixNano())
	if err := waitPubsubReady(ctx, pub.newWorker(0, run+"-probe"), sub, run+"-probe"); err != nil {
		return res, fmt.Errorf("%s: %w", s.ID, err)
	}

	var seq atomic.Int64
	var gate *backlogGate
	if s.Mode == modeMax && sub != nil && o.MaxBacklog > 0 {
		if gate, err = sub.follow(ctx, run, o.MaxBacklog); err != nil {
			return res, fmt.Errorf("%s: %w", s.ID, err)
		}
		defer gate.stop()
		res.MaxBacklog = o.MaxBacklog
	}
	if o.profile != nil {
		if done := o.profile(ctx, s); done != nil {
			defer done()
		}
	}
	m := startProcMeter(p.sidecar, p.broker, p.app)
	var (
		lat         []time.Duration
		total       int
		measureFrom time.Time
		window      time.Duration
	)
	switch s.Mode {
	case modeMax:
		fmt.Fprintf(progress, "%s: %d workers for %v (+%v warm-up)\n", s.ID, o.Max.Concurrency, o.Max.Duration, o.Max.Warmup)
		begin := time.Now()
		lr, err := runLoad(ctx, o.Max, func(id int) (pairFunc, error) {
			f := pub.newWorker(id, run)
			return func(ctx context.Context, _ int) error {
				n := seq.Add(1) - 1
				if gate != nil {
					if err := gate.wait(ctx, n); err != nil {
						return err
					}
				}
				return f(ctx, n, time.Now().UnixNano())
			}, nil
		})
		if err != nil {
			return res, fmt.Errorf("%s: %w", s.ID, err)
		}
		res.Workers, res.Errors, res.FirstError = o.Max.Concurrency, lr.Errors, lr.FirstError
		res.PublishPerSec, lat, total = lr.PairsPerSec(), lr.Latencies, lr.Total
		measureFrom, window = begin.Add(o.Max.Warmup), o.Max.Duration
	case modeRate:
		fmt.Fprintf(progress, "%s: %g events/s for %v (+%v warm-up)\n", s.ID, o.Rate.Rate, o.Rate.Duration, o.Rate.Warmup)
		rr, err := runRateDue(ctx, o.Rate, func(id int) (dueReqFunc, error) {
			f := pub.newWorker(id, run)
			return func(ctx context.Context, due time.Time) error {
				return f(ctx, seq.Add(1)-1, due.UnixNano())
			}, nil
		})
		if err != nil {
			return res, fmt.Errorf("%s at %g events/s: %w", s.ID, o.Rate.Rate, err)
		}
		res.TargetRate, res.Workers, res.Errors, res.FirstError = o.Rate.Rate, o.Rate.Workers, rr.Errors, rr.FirstError
		res.PublishPerSec, lat, total = rr.ReqPerSec(), rr.Latencies, rr.Total
		measureFrom, window = rr.MeasureFrom, o.Rate.Duration
	default:
		return res, fmt.Errorf("%s: unknown mode %q", s.ID, s.Mode)
	}
	res.Published = len(lat)
	res.PubP50Ms, res.PubP90Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90))
	res.PubP99Ms, res.PubMaxMs = ms(percentile(lat, 99)), ms(percentile(lat, 100))

	if sub != nil {
		end := time.Now()
		got, err := sub.waitCount(ctx, run, total, o.DrainTimeout)
		if err != nil {
			return res, fmt.Errorf("%s: waiting for deliveries: %w", s.ID, err)
		}
		res.DrainSec = time.Since(end).Seconds()
		if got < total {
			fmt.Fprintf(progress, "%s: %d of %d events delivered; nothing more for %v\n", s.ID, got, total, o.DrainTimeout)
		}
		st, err := sub.samples(ctx, run)
		if err != nil {
			return res, fmt.Errorf("%s: %w", s.ID, err)
		}
		res.setDeliveries(st, total, measureFrom, window)
	}
	used, other := m.stop()
	res.OtherCores = other
	if total > 0 {
		per := func(sec float64) float64 { return sec * 1e6 / float64(total) }
		res.GenCPUUs, res.SidecarCPUUs, res.BrokerCPUUs, res.AppCPUUs = per(used[0]), per(used[1]), per(used[2]), per(used[3])
		if used[1] > 0 {
			res.EventsPerSidecarCore = float64(total) / used[1]
		}
	}
	return res, nil
}

// setDeliveries fills the delivery figures from the subscriber's records:
// the publish → arrival latency of the events published in the measured
// window, and the events that arrived in it per second.
func (r *PubsubResult) setDeliveries(st subStats, published int, from time.Time, window time.Duration) {
	lo := from.UnixNano()
	hi := lo + int64(window)
	var lat []time.Duration
	arrived := 0
	for i, sent := range st.Sent {
		recv := st.Recv[i]
		if sent >= lo && sent < hi {
			lat = append(lat, time.Duration(max(0, recv-sent)))
		}
		if recv >= lo && recv < hi {
			arrived++
		}
	}
	slices.Sort(lat)
	r.Delivered, r.Duplicates = st.Received, st.Duplicates
	r.Lost = max(0, published-st.Received)
	r.DeliverPerSec = float64(arrived) / window.Seconds()
	r.E2EP50Ms, r.E2EP90Ms = ms(percentile(lat, 50)), ms(percentile(lat, 90))
	r.E2EP99Ms, r.E2EMaxMs = ms(percentile(lat, 99)), ms(percentile(lat, 100))
	r.E2ESamples = len(lat)
}

// pubsubAllOptions shape `mecha bench pubsub-all`.
type pubsubAllOptions struct {
	Pubsub    pubsubOptions
	Binary    string
	Scenarios []pubsubScenario
	// JetStreamConcurrency, when set, is the pubsub.jetstream component's
	// concurrency metadata (single, parallel or a number); empty keeps
	// the component's default.
	JetStreamConcurrency string
	// ProfileDir, when set, receives CPU profiles of the sidecar, the NATS
	// server and the subscriber taken during the measured window of
	// ProfileScenario.
	ProfileDir, ProfileScenario string
}

// pubsubProfiler takes the CPU profiles of pubsub-all --profile: each
// process it starts serves them on a loopback port of its own
// (pprofEnv).
type pubsubProfiler struct {
	dir, scenario string
	max, rate     struct{ delay, length time.Duration }
	addrs         map[string]string

	mu       sync.Mutex
	firstErr error
}

func newPubsubProfiler(o pubsubAllOptions) *pubsubProfiler {
	p := &pubsubProfiler{dir: o.ProfileDir, scenario: o.ProfileScenario, addrs: map[string]string{}}
	p.max.delay, p.max.length = o.Pubsub.Max.Warmup, o.Pubsub.Max.Duration
	p.rate.delay, p.rate.length = o.Pubsub.Rate.Warmup, o.Pubsub.Rate.Duration
	return p
}

// env returns base plus, when profiling, the variable that makes process
// name serve profiles on a free loopback port.
func (p *pubsubProfiler) env(base []string, name string) ([]string, error) {
	if p.dir == "" {
		return base, nil
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	p.addrs[name] = addr
	return append(base[:len(base):len(base)], pprofEnv+"="+addr), nil
}

// hook is pubsubOptions.profile.
func (p *pubsubProfiler) hook(progress io.Writer) func(ctx context.Context, s pubsubScenario) func() {
	if p.dir == "" {
		return nil
	}
	return func(ctx context.Context, s pubsubScenario) func() {
		if s.ID != p.scenario {
			return nil
		}
		w := p.max
		if s.Mode == modeRate {
			w = p.rate
		}
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for name, addr := range p.addrs {
			file := filepath.Join(p.dir, s.ID+"-"+name+".pprof")
			wg.Go(func() {
				err := fetchProfile(ctx, addr, file, w.delay, w.length)
				p.mu.Lock()
				defer p.mu.Unlock()
				if err != nil {
					if p.firstErr == nil {
						p.firstErr = fmt.Errorf("profiling %s: %w", name, err)
					}
					return
				}
				fmt.Fprintf(progress, "wrote %s\n", file)
			})
		}
		return func() {
			wg.Wait()
			cancel()
		}
	}
}

func (p *pubsubProfiler) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

// runPubsubAll starts the NATS server, the subscriber app and a sidecar
// with a pubsub.jetstream and a pubsub.in-memory component in front of
// it, all from o.Binary, and measures every scenario. Every process is
// stopped by its PID and the temporary directory (the JetStream store
// included) removed before it returns.
func runPubsubAll(ctx context.Context, o pubsubAllOptions, progress io.Writer) (*PubsubReport, error) {
	if err := o.Pubsub.validate(); err != nil {
		return nil, err
	}
	rep := &PubsubReport{Machine: thisMachine(), Settings: pubsubSettings(o.Pubsub, o.JetStreamConcurrency)}
	tmp, err := os.MkdirTemp("", "mecha-bench-pubsub-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	env := append(os.Environ(), "MECHA_HOME="+filepath.Join(tmp, "home"))
	prof := newPubsubProfiler(o)
	o.Pubsub.profile = prof.hook(progress)
	need := map[string]bool{}
	subs := map[string]string{} // the subscriber's topic of each pubsub
	for _, s := range o.Scenarios {
		need[s.Pubsub] = true
		need["sidecar"] = need["sidecar"] || s.Call != pubRaw
		if s.Deliver {
			subs[s.Pubsub] = s.Topic
		}
	}

	resources := filepath.Join(tmp, "resources")
	if err := os.MkdirAll(resources, 0o755); err != nil {
		return nil, err
	}
	var procs []*sidecarProc
	stopAll := func() error {
		var errs []error
		for i := len(procs) - 1; i >= 0; i-- {
			errs = append(errs, procs[i].Stop())
		}
		procs = nil
		return errors.Join(errs...)
	}
	defer stopAll()

	var natsProc, app, sc *sidecarProc
	var natsURL, appAddr string
	component := func(name, typ string, kv ...string) error {
		return os.WriteFile(filepath.Join(resources, name+".yaml"), []byte(componentYAML(name, typ, kv...)), 0o644)
	}
	if need[psJetStream] || need[psJetStreamParallel] {
		nenv, err := prof.env(env, "nats")
		if err != nil {
			return nil, err
		}
		if natsProc, natsURL, err = startNATS(ctx, o.Binary, tmp, nenv); err != nil {
			return nil, err
		}
		procs = append(procs, natsProc)
		fmt.Fprintf(progress, "started nats pid %d: %s\n", natsProc.PID(), natsURL)
		kv := []string{"natsURL", natsURL}
		if o.JetStreamConcurrency != "" {
			kv = append(kv, "concurrency", o.JetStreamConcurrency)
		}
		if err := component(psJetStream, "pubsub.jetstream", kv...); err != nil {
			return nil, err
		}
		if err := component(psJetStreamParallel, "pubsub.jetstream", "natsURL", natsURL, "concurrency", "parallel"); err != nil {
			return nil, err
		}
	}
	if need[psInMemory] {
		if err := component(psInMemory, "pubsub.in-memory"); err != nil {
			return nil, err
		}
	}
	var args []string
	if len(subs) > 0 {
		var specs []string
		for _, ps := range []string{psJetStream, psJetStreamParallel, psInMemory} {
			if t, ok := subs[ps]; ok {
				specs = append(specs, ps+"="+t)
			}
		}
		aenv, err := prof.env(env, "subscriber")
		if err != nil {
			return nil, err
		}
		if app, appAddr, err = startSubscriber(ctx, o.Binary, tmp, specs, aenv); err != nil {
			return nil, err
		}
		procs = append(procs, app)
		fmt.Fprintf(progress, "started subscriber pid %d: http %s\n", app.PID(), appAddr)
		args = []string{"--app-port", portOf(appAddr), "--app-protocol", "http"}
	}
	if need["sidecar"] {
		senv, err := prof.env(env, "sidecar")
		if err != nil {
			return nil, err
		}
		sc, err = startSidecar(sidecarSpec{Name: "sidecar", Binary: o.Binary, AppID: fmt.Sprintf("mecha-bench-pubsub-%d", os.Getpid()), ResourcesDir: resources, LogDir: tmp, Env: senv, Args: args})
		if err != nil {
			return nil, err
		}
		procs = append(procs, sc)
		if _, err := sc.waitHealthy(ctx, 5*time.Millisecond, 30*time.Second); err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "started sidecar pid %d: http %s grpc %s\n", sc.PID(), sc.httpAddr, sc.grpcAddr)
	}

	for _, s := range o.Scenarios {
		t := pubTarget{Call: s.Call, Pubsub: s.Pubsub, Topic: s.Topic}
		var p pubsubPIDs
		switch s.Call {
		case pubHTTP:
			t.Addr, p.sidecar = sc.httpAddr, sc.PID()
		case pubGRPC:
			t.Addr, p.sidecar = sc.grpcAddr, sc.PID()
		case pubRaw:
			t.Addr = natsURL
		}
		if natsProc != nil && s.Pubsub != psInMemory {
			p.broker = natsProc.PID()
		}
		if s.Deliver {
			t.Subscriber, p.app = appAddr, app.PID()
		}
		r, err := runPubsub(ctx, s, t, p, o.Pubsub, progress)
		if err != nil {
			if sc != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w\nsidecar log: %s", err, sc.logTail())
			}
			return nil, errors.Join(err, exitedProcs(procs...))
		}
		rep.Results = append(rep.Results, r)
	}
	if sc != nil {
		rep.SidecarRSSMB, _ = procRSSMB(sc.PID())
	}
	if natsProc != nil {
		rep.BrokerRSSMB, _ = procRSSMB(natsProc.PID())
	}
	if err := stopAll(); err != nil {
		return nil, err
	}
	if err := prof.err(); err != nil {
		return nil, err
	}
	rep.Comparisons = comparePubsub(rep)
	return rep, nil
}
