package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/state/inmemory"
)

func TestParsePeriod(t *testing.T) {
	cases := []struct {
		in      string
		y, m, d int
		dur     time.Duration
		rep     int
		err     bool
	}{
		{in: "", rep: -1},
		{in: "1m30s", dur: 90 * time.Second, rep: -1},
		{in: "0h0m3s0ms", dur: 3 * time.Second, rep: -1},
		{in: "PT1S", dur: time.Second, rep: -1},
		{in: "PT0.2S", dur: 200 * time.Millisecond, rep: -1},
		{in: "P1DT2H", d: 1, dur: 2 * time.Hour, rep: -1},
		{in: "P2W", d: 14, rep: -1},
		{in: "P1Y2M3DT4H5M6S", y: 1, m: 2, d: 3, dur: 4*time.Hour + 5*time.Minute + 6*time.Second, rep: -1},
		{in: "R5/PT1S", dur: time.Second, rep: 5},
		{in: "R3/PT0.2S", dur: 200 * time.Millisecond, rep: 3},
		{in: "R5", rep: 5},
		{in: "R5/", rep: 5},
		{in: "R0/PT1S", err: true},
		{in: "-1s", err: true},
		{in: "P", err: true},
		{in: "PT", err: true},
		{in: "PT1D", err: true},
		{in: "P1H", err: true},
		{in: "PTxS", err: true},
		{in: "10D1M", err: true},
		{in: "every minute", err: true},
		{in: "Rx/PT1S", err: true},
	}
	for _, c := range cases {
		p, err := ParsePeriod(c.in)
		if c.err {
			if err == nil {
				t.Errorf("ParsePeriod(%q) = %+v, want an error", c.in, p)
			}
			continue
		}
		if err != nil || p.Years != c.y || p.Months != c.m || p.Days != c.d || p.Duration != c.dur || p.Repeats != c.rep || p.Raw != c.in {
			t.Errorf("ParsePeriod(%q) = %+v, %v; want y%d m%d d%d %v rep %d", c.in, p, err, c.y, c.m, c.d, c.dur, c.rep)
		}
	}
	// Calendar periods add calendar units.
	p, _ := ParsePeriod("P1M")
	jan31 := time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)
	if got := p.After(jan31); !got.Equal(jan31.AddDate(0, 1, 0)) {
		t.Errorf("P1M after %v = %v", jan31, got)
	}
}

func TestParseTime(t *testing.T) {
	base := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "5s", want: base.Add(5 * time.Second)},
		{in: "PT1M", want: base.Add(time.Minute)},
		{in: "P1D", want: base.AddDate(0, 0, 1)},
		{in: "2026-02-03T04:05:06Z", want: time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)},
		{in: "2026-02-03T04:05:06.5Z", want: time.Date(2026, 2, 3, 4, 5, 6, 5e8, time.UTC)},
		{in: "R5/PT1S", err: true},
		{in: "tomorrow", err: true},
		{in: "", err: true},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in, base)
		if (err != nil) != c.err || (!c.err && !got.Equal(c.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (error %v)", c.in, got, err, c.want, c.err)
		}
	}
}

func TestSkipMissed(t *testing.T) {
	p, _ := ParsePeriod("1s")
	start := time.Unix(1000, 0)
	now := start.Add(10*time.Second + 300*time.Millisecond)
	if got := skipMissed(p, start, now); !got.Equal(start.Add(11 * time.Second)) {
		t.Fatalf("skipMissed = %v, want the first firing after now (%v)", got, start.Add(11*time.Second))
	}
	if got := skipMissed(p, start, start); !got.Equal(start.Add(time.Second)) {
		t.Fatalf("skipMissed at the firing itself = %v", got)
	}
}

func TestParseAppConfig(t *testing.T) {
	body := `{"entities":["A","B"],"actorIdleTimeout":"5m","actorScanInterval":"10s","drainOngoingCallTimeout":"bogus",
"drainRebalancedActors":false,"reentrancy":{"enabled":true},"remindersStoragePartitions":7,
"entitiesConfig":[{"entities":["B","C"],"actorIdleTimeout":"1s","reentrancy":{"enabled":false},"drainRebalancedActors":true}]}`
	hc, err := parseAppConfig([]byte(body), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(hc.order) != "[A B C]" || hc.scanInterval != 10*time.Second {
		t.Fatalf("types %v scan %v", hc.order, hc.scanInterval)
	}
	a, b, c := hc.types["A"], hc.types["B"], hc.types["C"]
	if a.IdleTimeout != 5*time.Minute || a.DrainTimeout != DefaultDrainTimeout || a.Drain || !a.Reentrant || a.MaxStackDepth != DefaultMaxStackDepth || a.Partitions != 7 {
		t.Errorf("A = %+v", a)
	}
	if b.IdleTimeout != time.Second || !b.Drain || b.Reentrant || b != c {
		t.Errorf("B = %+v, C = %+v", b, c)
	}
	if _, err := parseAppConfig([]byte("{"), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("invalid JSON accepted")
	}
	hc, err = parseAppConfig(nil, slog.New(slog.DiscardHandler))
	if err != nil || len(hc.types) != 0 {
		t.Errorf("empty body: %v %v", hc.types, err)
	}
}

// TestTurnsFIFO checks that waiting calls get the turn in arrival order and
// that a reentrant chain enters its own turn up to the stack limit.
func TestTurnsFIFO(t *testing.T) {
	a := newActor("T", "1")
	release, err := a.acquire(t.Context(), "", 32)
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			rel, err := a.acquire(t.Context(), "", 32)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			rel()
		})
		// Queue them one after the other.
		for {
			a.mu.Lock()
			n := len(a.waiters)
			a.mu.Unlock()
			if n == i+1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	release()
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("turn order %v, want arrival order", order)
		}
	}

	// Reentrancy: the chain's id enters; another id waits; depth bounded.
	r1, _ := a.acquire(t.Context(), "chain", 3)
	r2, err := a.acquire(t.Context(), "chain", 3)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := a.acquire(t.Context(), "chain", 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.acquire(t.Context(), "chain", 3); !errors.Is(err, errStackDepth) {
		t.Fatalf("fourth level: %v, want errStackDepth", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.acquire(ctx, "other", 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("another chain during the turn: %v, want it to wait", err)
	}
	r3()
	r2()
	r1()
	if r, err := a.acquire(t.Context(), "other", 3); err != nil {
		t.Fatal(err)
	} else {
		r()
	}
}

// TestKillWakesWaiters checks that waiters of a deactivated actor are sent
// away once the current turn ends, and that the drain channel says when.
func TestKillWakesWaiters(t *testing.T) {
	a := newActor("T", "1")
	release, _ := a.acquire(t.Context(), "", 32)
	errc := make(chan error, 1)
	go func() {
		_, err := a.acquire(t.Context(), "", 32)
		errc <- err
	}()
	for {
		a.mu.Lock()
		n := len(a.waiters)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, ok := a.kill(true); ok {
		t.Fatal("an idle-only kill took a busy actor")
	}
	drained, ok := a.kill(false)
	if !ok {
		t.Fatal("kill refused")
	}
	select {
	case <-drained:
		t.Fatal("drained while a turn runs")
	default:
	}
	release()
	<-drained
	if err := <-errc; !errors.Is(err, errDeactivated) {
		t.Fatalf("waiter: %v, want errDeactivated", err)
	}
	if _, err := a.acquire(t.Context(), "", 32); !errors.Is(err, errDeactivated) {
		t.Fatalf("acquire after kill: %v", err)
	}
}

// fakePlacement is a one-host placement driven by the test.
type fakePlacement struct {
	owner   atomic.Value // string
	version atomic.Uint64
	hooks   Hooks
	running chan struct{}
}

func (f *fakePlacement) Lookup(string, string) (string, bool) {
	o, _ := f.owner.Load().(string)
	return o, o != ""
}
func (f *fakePlacement) Version() uint64 { return f.version.Load() }
func (f *fakePlacement) Connected() bool { return true }
func (f *fakePlacement) Run(ctx context.Context, _ []string) error {
	f.hooks.OnLock()
	f.version.Add(1)
	f.hooks.OnUpdate(f.version.Load())
	f.hooks.OnUnlock()
	close(f.running)
	<-ctx.Done()
	return nil
}

// httpTestApp is an App over an httptest server.
type httpTestApp struct{ url string }

func (h httpTestApp) WaitReady(context.Context) error { return nil }
func (h httpTestApp) Do(ctx context.Context, method, path string, header http.Header, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, body)
	if err != nil {
		return nil, err
	}
	req.Header = header
	return http.DefaultClient.Do(req)
}

// TestLockHoldsCalls checks that calls wait while the table is locked and
// proceed at unlock, and that a lock without unlock ends by itself.
func TestLockHoldsCalls(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dapr/config" {
			_, _ = io.WriteString(w, `{"entities":["T"]}`)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	fp := &fakePlacement{running: make(chan struct{})}
	fp.owner.Store("self:1")
	b := New(Options{
		AppID: "app", App: httpTestApp{srv.URL}, LockTimeout: 300 * time.Millisecond,
		Placement: func(addr string, h Hooks) (Placement, error) { fp.hooks = h; return fp, nil },
	})
	st := inmemory.New(components.Deps{})
	if err := st.Init(t.Context(), components.Metadata{}); err != nil {
		t.Fatal(err)
	}
	b.SetStateStore("statestore", st)
	b.Start("self:1")
	defer b.Close(context.Background())
	<-fp.running
	call := func() error {
		_, err := b.Invoke(context.Background(), &InvokeRequest{ActorType: "T", ActorID: "1", Method: "m"})
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	b.OnLock()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		t.Fatalf("a call went through during the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	b.OnUnlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A lock nobody ends is lifted after LockTimeout.
	b.OnLock()
	start := time.Now()
	if err := call(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("a call during a stuck lock took %v, want about the 300ms lock timeout", d)
	}
	if !strings.Contains(fmt.Sprint(b.Status().ActiveActors), "T 1") {
		t.Fatalf("status %+v", b.Status())
	}
}
