package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/controlplane/broker"
)

func TestAppendEvent(t *testing.T) {
	for _, size := range []int{minEventSize, 1024, 4096} {
		b := appendEvent([]byte("junk"), "run-1", 42, 1700000000123456789, size)
		ev := b[4:]
		if len(ev) != size {
			t.Errorf("size %d: %d bytes", size, len(ev))
		}
		var got struct {
			benchEvent
			Pad string `json:"pad"`
		}
		if err := json.Unmarshal(ev, &got); err != nil {
			t.Fatalf("size %d: %v: %s", size, err, ev)
		}
		if got.Run != "run-1" || got.Seq != 42 || got.T != 1700000000123456789 || strings.Trim(got.Pad, "a") != "" {
			t.Errorf("size %d: decoded %+v", size, got)
		}
	}
	// Fields longer than the size: no padding, still valid JSON.
	if b := appendEvent(nil, strings.Repeat("r", 200), 1, 2, 10); !json.Valid(b) {
		t.Errorf("oversized event is not JSON: %s", b)
	}
}

func TestParseSubSpecs(t *testing.T) {
	got, err := parseSubSpecs([]string{"jetstream=bench-events", " in-memory = t2 "})
	if err != nil {
		t.Fatal(err)
	}
	want := []subSpec{{"jetstream", "bench-events", "/events/jetstream"}, {"in-memory", "t2", "/events/in-memory"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]string{nil, {"x"}, {"=t"}, {"p="}, {"a/b=t"}} {
		if _, err := parseSubSpecs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// cloudEvent wraps an event's data as the sidecar delivers it.
func cloudEvent(run string, seq, ts int64) string {
	return fmt.Sprintf(`{"id":"x","source":"bench","type":"com.dapr.event.sent","specversion":"1.0","datacontenttype":"application/json","data":%s}`,
		appendEvent(nil, run, seq, ts, 200))
}

func postEvent(t *testing.T, addr, pubsub, body string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+subscriberRoute+pubsub, "application/cloudevents+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST event: HTTP %d", resp.StatusCode)
	}
}

func TestSubscriberRecordsEvents(t *testing.T) {
	specs, _ := parseSubSpecs([]string{"in-memory=bench-events"})
	s, err := serveSubscriber("127.0.0.1:0", specs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get("http://" + s.Addr + "/dapr/subscribe")
	if err != nil {
		t.Fatal(err)
	}
	var subs []map[string]string
	err = json.NewDecoder(resp.Body).Decode(&subs)
	resp.Body.Close()
	if err != nil || len(subs) != 1 || subs[0]["pubsubname"] != "in-memory" || subs[0]["topic"] != "bench-events" || subs[0]["route"] != "/events/in-memory" {
		t.Fatalf("/dapr/subscribe: %v %v", subs, err)
	}

	c := newSubscriberClient(s.Addr)
	defer c.Close()
	ctx := context.Background()
	// A progress stream opened before the first event sees every count.
	g, err := c.follow(ctx, "r1", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	sent := time.Now().Add(-3 * time.Millisecond).UnixNano()
	postEvent(t, s.Addr, "in-memory", cloudEvent("r1", 0, sent))
	postEvent(t, s.Addr, "in-memory", cloudEvent("r1", 1, sent))
	postEvent(t, s.Addr, "in-memory", cloudEvent("r1", 1, sent)) // redelivered
	postEvent(t, s.Addr, "in-memory", cloudEvent("r2", 0, sent))
	postEvent(t, s.Addr, "in-memory", `{"data":"not a bench event"}`)

	st, err := c.samples(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Received != 2 || st.Duplicates != 1 || st.Malformed != 1 || len(st.Sent) != 2 || len(st.Recv) != 2 {
		t.Fatalf("r1: %+v", st)
	}
	for i := range st.Sent {
		if st.Sent[i] != sent || st.Recv[i]-sent < int64(3*time.Millisecond) {
			t.Errorf("sample %d: sent %d recv %d (published at %d)", i, st.Sent[i], st.Recv[i], sent)
		}
	}
	if n, err := c.waitCount(ctx, "r2", 1, time.Second); err != nil || n != 1 {
		t.Errorf("r2: %d, %v", n, err)
	}
	if n, err := c.waitCount(ctx, "r3", 1, 50*time.Millisecond); err != nil || n != 0 {
		t.Errorf("nothing of r3: %d, %v", n, err)
	}

	// Two delivered: events 0..3 may go at once (backlog 2), event 4
	// waits for two more deliveries.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := g.wait(wctx, 3); err != nil {
		t.Fatalf("event 3 with 2 delivered and a backlog of 2: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.wait(wctx, 5) }()
	select {
	case err := <-done:
		t.Fatalf("event 5 went with 2 delivered: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	postEvent(t, s.Addr, "in-memory", cloudEvent("r1", 2, sent))
	postEvent(t, s.Addr, "in-memory", cloudEvent("r1", 3, sent))
	if err := <-done; err != nil {
		t.Fatalf("event 5 after 4 deliveries: %v", err)
	}
	// A cancelled wait returns.
	cctx, ccancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); ccancel() }()
	if err := g.wait(cctx, 100); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
}

// The progress stream ends with the subscriber, and the gate says so
// rather than holding publishers forever.
func TestBacklogGateEndsWithTheSubscriber(t *testing.T) {
	specs, _ := parseSubSpecs([]string{"p=t"})
	s, err := serveSubscriber("127.0.0.1:0", specs)
	if err != nil {
		t.Fatal(err)
	}
	c := newSubscriberClient(s.Addr)
	defer c.Close()
	g, err := c.follow(context.Background(), "r", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	done := make(chan error, 1)
	go func() { done <- g.wait(context.Background(), 10) }()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "progress stream ended") {
			t.Errorf("wait = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still blocked after the subscriber closed")
	}
}

func TestSelectPubsubScenarios(t *testing.T) {
	all, err := selectPubsubScenarios("")
	if err != nil || len(all) != len(pubsubScenarios) {
		t.Fatalf("all: %d %v", len(all), err)
	}
	got, err := selectPubsubScenarios("e2e-in-memory, publish-grpc")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	// Canonical order, and the raw client the sidecar publish is compared with.
	if want := "publish-grpc,publish-raw,e2e-in-memory"; strings.Join(ids, ",") != want {
		t.Errorf("selected %v, want %s", ids, want)
	}
	if _, err := selectPubsubScenarios("e2e-jetstream,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown scenario: %v", err)
	}
	seen := map[string]string{}
	for _, s := range pubsubScenarios {
		if s.Topic == "" || (s.Deliver && s.Topic == topicPublish) || (!s.Deliver && s.Topic != topicPublish) {
			t.Errorf("%s: topic %q", s.ID, s.Topic)
		}
		// One subscriber route per pubsub: its scenarios share a topic.
		if s.Deliver {
			if prev, ok := seen[s.Pubsub]; ok && prev != s.Topic {
				t.Errorf("%s: pubsub %s on topics %s and %s", s.ID, s.Pubsub, prev, s.Topic)
			}
			seen[s.Pubsub] = s.Topic
		}
	}
	// The two JetStream components must not share a stream.
	if seen[psJetStream] == seen[psJetStreamParallel] {
		t.Errorf("both JetStream components subscribe to %q", seen[psJetStream])
	}
}

func TestPubsubOptionsValidate(t *testing.T) {
	lf := &loadFlags{Concurrency: 16, Duration: 10 * time.Second, Warmup: time.Second}
	f := pubsubFlags{BodySize: 1024, Rate: 1000, RateDuration: 10 * time.Second, RateWorkers: 32, Spin: 50 * time.Microsecond, MaxBacklog: 1000, DrainTimeout: 30 * time.Second}
	o := f.options(lf)
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	if o.Rate.Warmup != time.Second || o.Max.Concurrency != 16 || o.Max.Keys != 1 {
		t.Errorf("options %+v", o)
	}
	bad := o
	bad.BodySize, bad.MaxBacklog, bad.DrainTimeout, bad.Max.Requests, bad.Rate.Rate = 10, -1, 0, 5, 0
	err := bad.validate()
	for _, want := range []string{"--body-size 10", "--max-backlog -1", "--drain-timeout", "--requests", "--rate 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validate() = %v, want it to mention %q", err, want)
		}
	}
}

func samplePubsubReport() *PubsubReport {
	r := &PubsubReport{
		Machine:  Machine{CPUs: 2, GOMAXPROCS: 2, OS: "linux", Arch: "amd64", Go: "go1.26", LoadAvg: []string{"0.10 0.20 0.30"}},
		Settings: PubsubSettings{BodyBytes: 1024, MaxWorkers: 16, MaxDurationSec: 10, MaxWarmupSec: 1, MaxBacklog: 1000, Rate: 1000, RateDurationSec: 10, RateWarmupSec: 1, RateWorkers: 32},
	}
	add := func(id string, x PubsubResult) {
		s, _ := findPubsubScenario(id)
		x.pubsubScenario = s
		x.Workers = 16
		if s.Mode == modeRate {
			x.TargetRate, x.Workers = 1000, 32
		}
		r.Results = append(r.Results, x)
	}
	add("publish-http", PubsubResult{PublishPerSec: 6000, PubP50Ms: 2, PubP99Ms: 8, SidecarCPUUs: 150, GenCPUUs: 70, BrokerCPUUs: 60, EventsPerSidecarCore: 6666})
	add("publish-grpc", PubsubResult{PublishPerSec: 4000})
	add("publish-raw", PubsubResult{PublishPerSec: 10000})
	add("e2e-jetstream", PubsubResult{PublishPerSec: 1000, DeliverPerSec: 1000, E2ESamples: 10000, E2EP50Ms: 3, E2EP99Ms: 9})
	add("e2e-jetstream-parallel", PubsubResult{PublishPerSec: 1000, DeliverPerSec: 1000, E2ESamples: 10000, E2EP50Ms: 1.5, E2EP99Ms: 9})
	add("e2e-in-memory", PubsubResult{PublishPerSec: 1000, DeliverPerSec: 900, E2ESamples: 10000, E2EP50Ms: 0.86})
	add("deliver-max-in-memory", PubsubResult{PublishPerSec: 8000, DeliverPerSec: 8000, E2ESamples: 80000, E2EP50Ms: 100})
	r.Comparisons = comparePubsub(r)
	return r
}

func TestComparePubsub(t *testing.T) {
	r := samplePubsubReport()
	got := map[string]Comparison{}
	for _, c := range r.Comparisons {
		got[c.Name] = c
	}
	if len(r.Comparisons) != 6 {
		t.Errorf("%d comparisons, want 6: %+v", len(r.Comparisons), r.Comparisons)
	}
	for _, w := range []struct {
		name  string
		value float64
		met   string
		ref   string
	}{
		{"publish-http vs publish-raw: publish throughput", 60, "yes", "raw 10,000/s"},
		{"publish-grpc vs publish-raw: publish throughput", 40, "no", "raw 10,000/s"},
		{"e2e-jetstream: publish -> app p50 @ 1,000/s", 3, "no", ""},
		{"e2e-jetstream-parallel: publish -> app p50 @ 1,000/s", 1.5, "yes", ""},
		{"e2e-in-memory: publish -> app p50 @ 1,000/s", 0.86, "", "daprd 0.43 ms (2.00x)"},
		{"deliver-max-in-memory vs daprd: events/s delivered", 3.2, "yes", "daprd 2,500/s"},
	} {
		c, ok := got[w.name]
		if !ok {
			t.Errorf("missing %q", w.name)
			continue
		}
		if d := c.Value - w.value; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v", w.name, c.Value, w.value)
		}
		m := ""
		if c.Met != nil {
			m = map[bool]string{true: "yes", false: "no"}[*c.Met]
		}
		if m != w.met || c.Reference != w.ref {
			t.Errorf("%s: met %q ref %q, want %q %q", w.name, m, c.Reference, w.met, w.ref)
		}
	}
	// Losses fail the delivery target whatever the rate.
	r.find("deliver-max-in-memory").Lost = 1
	for _, c := range comparePubsub(r) {
		if strings.HasPrefix(c.Name, "deliver-max") && *c.Met {
			t.Error("deliver-max with a lost event met its target")
		}
	}
	// No raw run, no publish ratios.
	if n := len(comparePubsub(&PubsubReport{Results: r.Results[:2]})); n != 0 {
		t.Errorf("without publish-raw: %d comparisons", n)
	}
}

func TestWritePubsubText(t *testing.T) {
	r := samplePubsubReport()
	r.Results[1].FirstError, r.Results[1].Errors = "oops", 2
	r.SidecarRSSMB, r.BrokerRSSMB = 30, 60
	var b bytes.Buffer
	if err := writePubsubText(&b, r, "run 1/1"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"== run 1/1", "load avg at start: 0.10 0.20 0.30",
		"1024-byte JSON events; closed loop: 16 workers for 10s after 1s warm-up (with a subscriber: at most 1,000 events",
		"fixed rate: 1,000 events/s",
		"@1,000/s", "c=16", "900 (behind)", "70|150|60|-", "6,666",
		"first error in publish-grpc: oops",
		"RSS after the runs: sidecar 30.0 MB, NATS server 60.0 MB",
		"MISSED", "met", "3.20x",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^publish-http vs publish-raw: publish throughput +60% +raw 10,000/s +>= 50% +met$`).MatchString(out) {
		t.Errorf("no publish-http comparison row:\n%s", out)
	}
	var j bytes.Buffer
	if err := printPubsubReport(&j, true, r, []*PubsubReport{r}); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Median PubsubReport   `json:"median"`
		Runs   []PubsubReport `json:"runs"`
	}
	if err := json.Unmarshal(j.Bytes(), &decoded); err != nil || len(decoded.Runs) != 1 || decoded.Median.Results[0].ID != "publish-http" || decoded.Median.Results[0].SidecarCPUUs != 150 {
		t.Errorf("JSON: %v\n%s", err, j.String())
	}
}

func TestMedianPubsubReport(t *testing.T) {
	a, b, c := samplePubsubReport(), samplePubsubReport(), samplePubsubReport()
	b.Results[0].PublishPerSec, c.Results[0].PublishPerSec = 2000, 9000
	b.Results[3].E2EP50Ms, c.Results[3].E2EP50Ms = 1, 30
	a.Results[6].Lost, b.Results[6].Lost = 1, 2
	c.Results = c.Results[:5] // a run without the last two
	m := medianPubsubReport([]*PubsubReport{a, b, c})
	if m.Runs != 3 || len(m.Results) != 7 || len(m.Machine.LoadAvg) != 3 {
		t.Fatalf("runs %d results %d loadavg %v", m.Runs, len(m.Results), m.Machine.LoadAvg)
	}
	if m.Results[0].PublishPerSec != 6000 || m.Results[3].E2EP50Ms != 3 || m.Results[6].Lost != 3 {
		t.Errorf("medians: %v %v, lost %d", m.Results[0].PublishPerSec, m.Results[3].E2EP50Ms, m.Results[6].Lost)
	}
	if m.Results[5].DeliverPerSec != 900 {
		t.Errorf("median of two runs = %v", m.Results[5].DeliverPerSec)
	}
	if len(m.Comparisons) != len(a.Comparisons) {
		t.Errorf("%d comparisons, want %d", len(m.Comparisons), len(a.Comparisons))
	}
	if len(medianPubsubReport(nil).Results) != 0 {
		t.Error("empty median")
	}
}

// TestPublishRawAgainstEmbeddedNATS runs `bench publish --call raw` for a
// moment against a NATS server in this process: the stream is created,
// the events are stored.
func TestPublishRawAgainstEmbeddedNATS(t *testing.T) {
	b := broker.New(broker.Options{StoreDir: t.TempDir()})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop(context.Background()) })
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"publish", "--call", "raw", "--addr", b.URL(), "--topic", "raw-test", "-c", "2", "-d", "200ms", "--warmup", "50ms", "--json"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rep PubsubReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if len(rep.Results) != 1 {
		t.Fatalf("report %+v", rep)
	}
	r := rep.Results[0]
	if r.ID != "publish-raw" || r.Published == 0 || r.PublishPerSec <= 0 || r.Errors != 0 || r.PubP50Ms <= 0 || r.PubP50Ms > r.PubP99Ms {
		t.Errorf("result %+v", r)
	}
	// A subscriber needs a sidecar.
	cmd = Command()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"publish", "--call", "raw", "--addr", b.URL(), "--subscriber", "127.0.0.1:1"})
	if err := cmd.ExecuteContext(context.Background()); err == nil {
		t.Error("--call raw with --subscriber accepted")
	}
}

// quickPubsub is a short load for the smoke test.
var quickPubsub = []string{"-c", "2", "-d", "300ms", "--warmup", "100ms", "--rate", "300", "--rate-duration", "300ms", "--rate-workers", "4", "--max-backlog", "50", "--drain-timeout", "10s", "--body-size", "512"}

// TestPubsubAllSmoke runs pubsub-all as a user would, with this test
// binary standing in for mecha (NATS server, subscriber and sidecar are
// child processes), and checks that every scenario measured something
// sane and that every process is gone afterwards.
func TestPubsubAllSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS, subscriber and sidecar processes")
	}
	out, progress := runBenchAsUser(t, append([]string{"pubsub-all", "--json"}, quickPubsub...)...)
	var rep PubsubReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Results) != len(pubsubScenarios) {
		t.Fatalf("%d results, want %d:\n%s", len(rep.Results), len(pubsubScenarios), out)
	}
	linux := runtime.GOOS == "linux"
	for _, r := range rep.Results {
		if r.Published == 0 || r.PublishPerSec <= 0 || r.Errors != 0 || r.PubP50Ms <= 0 || r.PubP50Ms > r.PubP99Ms {
			t.Errorf("%s: publish figures %+v", r.ID, r)
		}
		if r.Deliver {
			// Every accepted event arrived once, and the latencies are
			// those of real deliveries (not zero, not minutes).
			if r.Lost != 0 || r.Delivered < r.Published || r.E2ESamples == 0 || r.DeliverPerSec <= 0 ||
				r.E2EP50Ms <= 0 || r.E2EP50Ms > r.E2EP99Ms || r.E2EMaxMs > 30000 {
				t.Errorf("%s: delivery figures %+v", r.ID, r)
			}
			if r.Mode == modeRate && (r.PublishPerSec < 150 || r.PublishPerSec > 450) {
				t.Errorf("%s: %.0f events/s at a rate of 300", r.ID, r.PublishPerSec)
			}
		}
		if linux {
			if r.GenCPUUs <= 0 {
				t.Errorf("%s: no load generator CPU", r.ID)
			}
			if r.Call != pubRaw && (r.SidecarCPUUs <= 0 || r.EventsPerSidecarCore <= 0) {
				t.Errorf("%s: no sidecar CPU: %+v", r.ID, r)
			}
			if r.Pubsub != psInMemory && r.BrokerCPUUs <= 0 {
				t.Errorf("%s: no NATS server CPU: %+v", r.ID, r)
			}
			if r.Deliver && r.AppCPUUs <= 0 {
				t.Errorf("%s: no subscriber CPU: %+v", r.ID, r)
			}
		}
	}
	if linux && (rep.SidecarRSSMB <= 0 || rep.BrokerRSSMB <= 0) {
		t.Errorf("RSS: sidecar %v, NATS %v", rep.SidecarRSSMB, rep.BrokerRSSMB)
	}
	names := map[string]bool{}
	for _, c := range rep.Comparisons {
		names[c.Name] = true
		if c.Value <= 0 {
			t.Errorf("comparison %+v", c)
		}
	}
	for _, want := range []string{"publish-http vs publish-raw: publish throughput", "publish-grpc vs publish-raw: publish throughput", "deliver-max-in-memory vs daprd: events/s delivered"} {
		if !names[want] {
			t.Errorf("no comparison %q: %+v", want, rep.Comparisons)
		}
	}
	checkChildrenGone(t, progress, 3) // nats, subscriber, sidecar
}

// TestSubscriberCommand runs `bench subscriber` in-process and reads its
// first line, as startSubscriber does from the child.
func TestSubscriberCommand(t *testing.T) {
	cmd := Command()
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"subscriber", "--subscribe", "p=t"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx); pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), subscriberLinePrefix)
	if !ok {
		t.Fatalf("first line %q", line)
	}
	resp, err := http.Get("http://" + addr + "/dapr/subscribe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/dapr/subscribe: %d", resp.StatusCode)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Error(err)
	}
	bad := Command()
	bad.SetOut(io.Discard)
	bad.SetErr(io.Discard)
	bad.SetArgs([]string{"subscriber"})
	if err := bad.ExecuteContext(context.Background()); err == nil {
		t.Error("no --subscribe accepted")
	}
}

// TestPubsubAllProfiles checks that --profile writes a CPU profile of each
// process pubsub-all starts, for the chosen scenario.
func TestPubsubAllProfiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts subscriber and sidecar processes")
	}
	asSidecar(t)
	dir := t.TempDir()
	cmd := Command()
	var progress bytes.Buffer
	cmd.SetOut(io.Discard)
	cmd.SetErr(&progress)
	cmd.SetArgs([]string{"pubsub-all", "--scenarios", "deliver-max-in-memory", "-c", "2", "-d", "1s", "--warmup", "100ms",
		"--profile", dir, "--profile-scenario", "deliver-max-in-memory"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	for _, name := range []string{"sidecar", "subscriber"} {
		st, err := os.Stat(dir + "/deliver-max-in-memory-" + name + ".pprof")
		if err != nil || st.Size() == 0 {
			t.Errorf("profile of %s: %v", name, err)
		}
	}
	bad := Command()
	bad.SetOut(io.Discard)
	bad.SetErr(io.Discard)
	bad.SetArgs([]string{"pubsub-all", "--profile", dir, "--profile-scenario", "nope"})
	if err := bad.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown --profile-scenario: %v", err)
	}
}
