package runtime

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestHealthStateMachine(t *testing.T) {
	h := newHealth()
	check := func(stage string, wantOutbound, wantReady string) {
		t.Helper()
		for _, c := range []struct {
			name string
			err  error
			want string
		}{{"Outbound", h.Outbound(), wantOutbound}, {"Ready", h.Ready(), wantReady}} {
			if (c.err == nil) != (c.want == "") || c.err != nil && !strings.Contains(c.err.Error(), c.want) {
				t.Errorf("%s: %s() = %v, want %q", stage, c.name, c.err, c.want)
			}
		}
	}
	check("initialising", "components are initialising", "components are initialising")
	select {
	case <-h.nudge:
		t.Fatal("Ready nudged the app prober before the APIs were outbound-ready")
	default:
	}

	h.set(func(h *health) { h.outbound = true })
	check("outbound", "", "waiting for the app")
	select {
	case <-h.nudge:
	default:
		t.Fatal("Ready did not nudge the app prober while waiting for the app")
	}
	// Many checks while the nudge is pending never block.
	done := make(chan struct{})
	go func() {
		for range 10 {
			h.Ready()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Ready blocked on a pending nudge")
	}

	h.set(func(h *health) { h.appReady = true })
	check("ready", "", "")
	h.set(func(h *health) { h.closing = true })
	check("closing", "shutting down", "shutting down")
}

func TestWaitForAppListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := waitForApp(ctx, "127.0.0.1", l.Addr().(*net.TCPAddr).Port, make(chan struct{})); err != nil {
		t.Fatalf("waitForApp = %v, want nil for a listening port", err)
	}
}

func TestWaitForAppContext(t *testing.T) {
	port := closedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := waitForApp(ctx, "127.0.0.1", port, make(chan struct{}))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitForApp = %v, want the context error", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("waitForApp returned %v after its context ended", el)
	}
}

// TestWaitForAppNudge: once the prober has backed off to its longest delay,
// a nudge makes it probe at once instead of sleeping the delay out.
func TestWaitForAppNudge(t *testing.T) {
	port := closedPort(t)
	nudge := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- waitForApp(ctx, "127.0.0.1", port, nudge) }()

	// Delays are 5, 10, 20, ... 320 ms, then 500 ms: after 700 ms the
	// prober is in a 500 ms wait that started 65 ms ago at the earliest.
	time.Sleep(700 * time.Millisecond)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Skipf("the test port was taken meanwhile: %v", err)
	}
	defer l.Close()
	nudged := time.Now()
	nudge <- struct{}{}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waitForApp = %v", err)
		}
		if el := time.Since(nudged); el > 250*time.Millisecond {
			t.Fatalf("waitForApp returned %v after the nudge, want at once", el)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitForApp did not return after the app listened and a nudge")
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
