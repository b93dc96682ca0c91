package invoke

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/invokemsg"
	"github.com/mecha-dev/mecha/internal/resiliency"
)

// downRemote is a transport to sidecars that are all unreachable; it
// records when each call was made.
type downRemote struct {
	mu    sync.Mutex
	times []time.Time
	addrs []string
}

func (d *downRemote) Call(_ context.Context, addr string, _ *invokemsg.Request) (*invokemsg.Response, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.times = append(d.times, time.Now())
	d.addrs = append(d.addrs, addr)
	return nil, fmt.Errorf("connection refused: %w", ErrUnreachable)
}

func request() *invokemsg.Request {
	return &invokemsg.Request{Message: &commonv1.InvokeRequest{Method: "m", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET}}}
}

// TestBuiltInServiceRetries checks daprd's built-in retries of a sidecar
// that cannot be reached (3 retries, 1s apart; here replaced by a
// Resiliency resource with 4 retries 50ms apart), and that a target entry
// for the app turns them off.
func TestBuiltInServiceRetries(t *testing.T) {
	p := resiliency.New(resiliency.Options{Logger: slog.New(slog.DiscardHandler)})
	if errs := p.Load([]config.Resiliency{{
		ObjectMeta: config.ObjectMeta{Name: "r"},
		Spec: config.ResiliencySpec{
			Retries: map[string]config.RetrySpec{
				config.BuiltInServiceRetries: {Policy: config.RetryConstant, Duration: 50 * time.Millisecond, MaxRetries: 4},
			},
			Timeouts: map[string]time.Duration{"t": time.Minute},
			Targets:  config.ResiliencyTargets{Apps: map[string]config.AppTarget{"own": {PolicyNames: config.PolicyNames{Timeout: "t"}}}},
		},
	}}); len(errs) > 0 {
		t.Fatal(errs)
	}
	remote := &downRemote{}
	b := New(Options{AppID: "me", Resolver: &fakeResolver{addrs: []string{"a:1"}}, Remote: remote, Resiliency: p})

	_, err := b.Invoke(context.Background(), "app", request())
	if err == nil || !strings.Contains(err.Error(), "a:1 (attempt 5 of 5)") {
		t.Fatalf("Invoke = %v, want the unreachable error after 5 attempts", err)
	}
	if len(remote.times) != 5 {
		t.Fatalf("%d calls, want 5", len(remote.times))
	}
	for i := 1; i < len(remote.times); i++ {
		if gap := remote.times[i].Sub(remote.times[i-1]); gap < 45*time.Millisecond || gap > time.Second {
			t.Errorf("retry %d came %v after the previous call, want about 50ms", i, gap)
		}
	}

	// A target entry for the app replaces the built-in retries with its own
	// policy, which has none.
	remote.times = nil
	if _, err := b.Invoke(context.Background(), "own", request()); err == nil || len(remote.times) != 1 {
		t.Fatalf("Invoke of an app with a target entry = %v after %d calls, want 1 call", err, len(remote.times))
	}
}

func TestBuiltInServiceRetriesDefaults(t *testing.T) {
	remote := &downRemote{}
	p := resiliency.New(resiliency.Options{})
	b := New(Options{AppID: "me", Resolver: &fakeResolver{addrs: []string{"a:1", "b:1"}}, Remote: remote, Resiliency: p})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	b.Invoke(ctx, "app", request())
	// The second instance is tried at once; the first again only after
	// daprd's 1s back-off.
	if len(remote.addrs) != 3 || remote.addrs[0] == remote.addrs[1] {
		t.Fatalf("calls to %v in 1.5s, want both instances at once and one more after 1s", remote.addrs)
	}
	if gap := remote.times[1].Sub(start); gap > 500*time.Millisecond {
		t.Errorf("the other instance was tried after %v, want at once", gap)
	}
	if gap := remote.times[2].Sub(remote.times[1]); gap < 900*time.Millisecond {
		t.Errorf("an instance was tried again after %v, want 1s", gap)
	}
}
