package controlplane_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
	"github.com/mecha-dev/mecha/internal/selfhosted"
)

// These tests drive the built mecha binary: the control plane is a
// process of its own that mecha init and mecha run start in the
// background, so only the real binary can start it.

// appEnv makes the test binary act as the subscriber app that `mecha run`
// starts (see subscriberApp).
const appEnv = "MECHA_CP_TEST_APP"

// mechaBin is the mecha binary TestMain builds.
var mechaBin string

func TestMain(m *testing.M) {
	if os.Getenv(appEnv) == "1" && len(os.Args) > 2 && os.Args[1] == "subscribe" {
		os.Exit(subscriberApp(os.Args[2]))
	}
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mecha-controlplane-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	mechaBin = filepath.Join(dir, "mecha")
	build := exec.Command("go", "build", "-o", mechaBin, "github.com/mecha-dev/mecha/cmd/mecha")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building mecha: %v\n%s", err, out)
		return 1
	}
	// Nothing masks write bits from here on, so that a file Mecha creates
	// world-writable shows up as such (see TestInitStartsControlPlane).
	syscall.Umask(0)
	return m.Run()
}

// subscriberApp is the app: it subscribes to topic on "pubsub"
// programmatically, prints each event it gets on one line ("event
// {json}"), and exits on SIGTERM, or when its parent (mecha run) is gone.
func subscriberApp(topic string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("APP_PORT"))
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	var mu sync.Mutex // one event per line
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/dapr/subscribe":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `[{"pubsubname":"pubsub","topic":%q,"route":"/events"}]`, topic)
		case r.Method == http.MethodPost && r.URL.Path == "/events":
			body, _ := io.ReadAll(r.Body)
			var line bytes.Buffer
			if err := json.Compact(&line, body); err != nil {
				line.Reset()
				fmt.Fprintf(&line, "%q", body)
			}
			mu.Lock()
			fmt.Printf("event %s\n", line.Bytes())
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"status":"SUCCESS"}`)
		default:
			http.NotFound(w, r)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	fmt.Println("listening")
	parent := os.Getppid()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
		select {
		case <-term:
			srv.Close()
			return 0
		case <-tick.C:
			if os.Getppid() != parent {
				srv.Close()
				return 3
			}
		}
	}
	return 4
}

// env is the environment of the mecha processes of a test.
type env struct {
	t    *testing.T
	home string
	vars []string
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, home: filepath.Join(t.TempDir(), "mecha home")}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MECHA_HOME", "HOME", selfhosted.ControlPlaneEnv, "DAPR_API_TOKEN", appEnv, "GORACE":
			continue
		}
		e.vars = append(e.vars, kv)
	}
	e.vars = append(e.vars, "MECHA_HOME="+e.home, "HOME="+t.TempDir(), appEnv+"=1", "NO_COLOR=1",
		"GORACE=atexit_sleep_ms=0")
	return e
}

func (e *env) layout() selfhosted.Layout { return selfhosted.LayoutAt(e.home) }

// mecha runs the binary with args to the end, within timeout.
func (e *env) mecha(timeout time.Duration, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mechaBin, args...)
	cmd.Env = e.vars
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		e.t.Fatalf("mecha %s: still running after %v:\n%s", strings.Join(args, " "), timeout, out)
	}
	return string(out), err
}

// must runs mecha and fails the test unless it succeeds.
func (e *env) must(args ...string) string {
	e.t.Helper()
	out, err := e.mecha(30*time.Second, args...)
	if err != nil {
		e.t.Fatalf("mecha %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// process is a mecha running in the background.
type process struct {
	cmd  *exec.Cmd
	out  *runtest.Buffer
	done chan struct{}
	err  error
}

// start runs mecha with args in the background. Cleanup stops it by its
// pid: SIGTERM, then SIGKILL after 20s.
func (e *env) start(args ...string) *process {
	e.t.Helper()
	p := &process{out: &runtest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(mechaBin, args...)
	p.cmd.Env = e.vars
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			e.t.Errorf("mecha %s ignored SIGTERM; killing pid %d", strings.Join(args, " "), p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit.
func (p *process) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("still running after %v:\n%s", timeout, p.out)
		return nil
	}
}

// waitLine waits until the output has a line matching re and returns its
// submatches.
func (p *process) waitLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		if p.exited() {
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("exited (%v) before printing a line matching %s:\n%s", p.err, re, p.out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line matching %s after 30s:\n%s", re, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// events returns the events the app of a `mecha run --app-id app` printed.
func (p *process) events(t *testing.T, app string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "["+app+"] event ")
		if !ok {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(rest), &ev); err != nil {
			t.Fatalf("the app got a delivery that is not JSON: %s", rest)
		}
		out = append(out, ev)
	}
	return out
}

// waitEvents waits until the app printed at least n events.
func (p *process) waitEvents(t *testing.T, app string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		evs := p.events(t, app)
		if len(evs) >= n {
			return evs
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("the app got %d events, want %d:\n%s", len(evs), n, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// controlPlanes remembers every control plane pid a test saw and stops
// those still running when the test ends, pass or fail, by pid.
type controlPlanes struct {
	t    *testing.T
	l    selfhosted.Layout
	pids map[int]bool
}

func trackControlPlanes(t *testing.T, l selfhosted.Layout) *controlPlanes {
	c := &controlPlanes{t: t, l: l, pids: map[int]bool{}}
	t.Cleanup(c.stopAll)
	return c
}

// state reads the state file and remembers its pid.
func (c *controlPlanes) state() selfhosted.ControlPlaneState {
	c.t.Helper()
	st, ok, err := selfhosted.ReadControlPlane(c.l)
	if err != nil || !ok {
		c.t.Fatalf("reading %s: ok=%v, %v", c.l.ControlPlaneFile(), ok, err)
	}
	if st.PID > 0 {
		c.pids[st.PID] = true
	}
	return st
}

func (c *controlPlanes) stopAll() {
	if st, ok, _ := selfhosted.ReadControlPlane(c.l); ok && st.PID > 0 {
		c.pids[st.PID] = true
	}
	for pid := range c.pids {
		if !isControlPlane(pid) {
			continue
		}
		c.t.Logf("stopping the control plane left running (pid %d)", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(15 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			c.t.Errorf("control plane pid %d ignored SIGTERM; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// alive reports whether pid is a running (not exited, not zombie)
// process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold
	// spaces.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// gone fails the test unless pid exits within 2s. mecha stop
// --control-plane returns once the control plane has let go of its lock,
// which it does as its last step, a moment before the process ends.
func gone(t *testing.T, pid int) {
	t.Helper()
	runtest.Eventually(t, 2*time.Second, func() error {
		if alive(pid) {
			return fmt.Errorf("control plane pid %d still runs after mecha stop --control-plane", pid)
		}
		return nil
	})
}

// isControlPlane reports whether pid runs this test's mecha binary as
// `control-plane` (a pid may have been reused).
func isControlPlane(pid int) bool {
	if !alive(pid) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 1 && args[0] == mechaBin && args[1] == "control-plane"
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// listeners returns the local addresses of the TCP sockets listening on
// port, from /proc/net/tcp and tcp6 ("127.0.0.1", "0.0.0.0", "::" ...).
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // no IPv6
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, _ := strings.Cut(fields[1], ":")
			if p, _ := strconv.ParseInt(hexPort, 16, 32); int(p) != port {
				continue
			}
			out = append(out, procIP(hexIP).String())
		}
	}
	return out
}

// procIP decodes an address of /proc/net/tcp: 32-bit words in host
// (little-endian) order.
func procIP(h string) net.IP {
	raw := make([]byte, len(h)/2)
	for i := range raw {
		v, _ := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		raw[i] = byte(v)
	}
	for w := 0; w+4 <= len(raw); w += 4 {
		raw[w], raw[w+1], raw[w+2], raw[w+3] = raw[w+3], raw[w+2], raw[w+1], raw[w]
	}
	return net.IP(raw)
}

// healthz gets the control plane's /healthz.
func healthz(addr string) (int, map[string]any, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var h map[string]any
	err = json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h, err
}

var (
	uuidRE        = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	traceparentRE = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)
)

// checkEvent checks the CloudEvent the subscriber got for data published
// through the sidecar of app id source.
func checkEvent(t *testing.T, ev map[string]any, source, topic string, data map[string]any) {
	t.Helper()
	for k, want := range map[string]any{
		"specversion": "1.0", "type": "com.dapr.event.sent", "source": source,
		"topic": topic, "pubsubname": "pubsub", "datacontenttype": "application/json",
	} {
		if ev[k] != want {
			t.Errorf("event %s = %v, want %v (event %v)", k, ev[k], want, ev)
		}
	}
	if id, _ := ev["id"].(string); !uuidRE.MatchString(id) {
		t.Errorf("event id = %v, want a UUID", ev["id"])
	}
	if tp, _ := ev["traceparent"].(string); !traceparentRE.MatchString(tp) {
		t.Errorf("event traceparent = %v, want a W3C traceparent", ev["traceparent"])
	}
	if got, _ := json.Marshal(ev["data"]); !jsonEqual(got, data) {
		t.Errorf("event data = %s, want %v", got, data)
	}
}

func jsonEqual(got []byte, want map[string]any) bool {
	w, _ := json.Marshal(want)
	var a, b any
	_ = json.Unmarshal(got, &a)
	_ = json.Unmarshal(w, &b)
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

var sidecarReadyRE = regexp.MustCompile(`(?m)^\[(\S+) sidecar\] .*msg="Mecha sidecar APIs ready" .*http=\[127\.0\.0\.1:(\d+)\]`)

// subscribed waits until the sidecar on httpPort lists a subscription.
func subscribed(t *testing.T, httpPort string) {
	t.Helper()
	runtest.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + httpPort + "/v1.0/metadata")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var md struct {
			Subscriptions []map[string]any `json:"subscriptions"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
			return err
		}
		if len(md.Subscriptions) == 0 {
			return fmt.Errorf("no subscription yet")
		}
		return nil
	})
}

// runSubscriber starts `mecha run --app-id sub --app-port P -- <this
// binary> subscribe topic` and waits until its subscription is in place.
func (e *env) runSubscriber(topic string) *process {
	e.t.Helper()
	self, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	p := e.start("run", "--app-id", "sub", "--app-port", strconv.Itoa(freePort(e.t)), "--", self, "subscribe", topic)
	p.waitLine(e.t, regexp.MustCompile(`(?m)^\[sub\] listening$`))
	subscribed(e.t, p.waitLine(e.t, sidecarReadyRE)[2])
	return p
}

// runPublisher starts `mecha run --app-id pub`, a sidecar without an app
// for `mecha publish --app-id pub` to publish through.
func (e *env) runPublisher() *process {
	e.t.Helper()
	p := e.start("run", "--app-id", "pub")
	p.waitLine(e.t, sidecarReadyRE)
	return p
}

// TestControlPlaneLifecycle: mecha init starts the local control plane
// (and a second init reuses it); an app run with mecha run gets what mecha
// publish sends through the embedded broker; mecha stop --control-plane
// stops it; an event published while the subscriber is down is kept by
// JetStream under MECHA_HOME/data/jetstream, across the control plane's
// restart, and delivered once the app is back.
func TestControlPlaneLifecycle(t *testing.T) {
	e := newEnv(t)
	l := e.layout()
	cps := trackControlPlanes(t, l)

	// The broker takes the port the home used last. Give the new home one,
	// so that the test never takes the default port (50007) that a
	// developer's own control plane may want.
	brokerPort := freePort(t)
	if err := selfhosted.WriteControlPlane(l, selfhosted.ControlPlaneState{Broker: fmt.Sprintf("nats://127.0.0.1:%d", brokerPort)}); err != nil {
		t.Fatal(err)
	}

	out := e.must("init")
	st := cps.state()
	wantBroker := fmt.Sprintf("nats://127.0.0.1:%d", brokerPort)
	if want := fmt.Sprintf("  control plane: started (pid %d), broker %s, log %s\n", st.PID, wantBroker, l.ControlPlaneLog()); !strings.Contains(out, want) {
		t.Fatalf("mecha init printed:\n%s\nwant the line %q", out, want)
	}
	if st.PID <= 0 || !isControlPlane(st.PID) {
		t.Fatalf("state %+v: pid %d is not a running mecha control-plane", st, st.PID)
	}
	if st.Broker != wantBroker {
		t.Errorf("state broker = %q, want %q", st.Broker, wantBroker)
	}
	code, h, err := healthz(st.Healthz)
	if err != nil || code != http.StatusOK || h["status"] != "ok" || h["pid"] != float64(st.PID) {
		t.Fatalf("/healthz at %s = %d %v, %v; want 200, status ok, pid %d", st.Healthz, code, h, err, st.PID)
	}
	if parts, _ := h["parts"].(map[string]any); parts["broker"] != "ok" {
		t.Errorf("/healthz parts = %v, want broker ok", h["parts"])
	}
	_, hp, _ := net.SplitHostPort(st.Healthz)
	healthzPort, _ := strconv.Atoi(hp)
	for name, port := range map[string]int{"broker": brokerPort, "healthz": healthzPort} {
		addrs := listeners(t, port)
		if len(addrs) == 0 {
			t.Errorf("nothing listens on the %s port %d", name, port)
		}
		for _, a := range addrs {
			if a != "127.0.0.1" {
				t.Errorf("the %s listens on %s:%d, want 127.0.0.1 only", name, a, port)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(l.Components, "pubsub.yaml")); err != nil || !strings.Contains(string(b), strconv.Quote(wantBroker)) {
		t.Errorf("components/pubsub.yaml does not point at %s (%v):\n%s", wantBroker, err, b)
	}

	// A second init finds it running.
	out = e.must("init")
	if want := fmt.Sprintf("  control plane: running (pid %d), broker %s", st.PID, wantBroker); !strings.Contains(out, want) {
		t.Fatalf("second mecha init printed:\n%s\nwant %q", out, want)
	}
	if again := cps.state(); again.PID != st.PID || again.Healthz != st.Healthz {
		t.Fatalf("second init changed the state: %+v, was %+v", again, st)
	}

	// Publish through one app's sidecar, receive in another app.
	sub := e.runSubscriber("orders")
	pub := e.runPublisher()
	out = e.must("publish", "--app-id", "pub", "--pubsub", "pubsub", "--topic", "orders", "--data", `{"orderId":7,"item":"widget"}`)
	if !strings.Contains(out, "event published to pubsub/orders") {
		t.Errorf("mecha publish printed %q", out)
	}
	evs := sub.waitEvents(t, "sub", 1)
	checkEvent(t, evs[0], "pub", "orders", map[string]any{"orderId": 7, "item": "widget"})
	if evs[0]["traceid"] != evs[0]["traceparent"] {
		t.Errorf("traceid = %v, traceparent = %v, want them equal", evs[0]["traceid"], evs[0]["traceparent"])
	}

	// Sidecars of the home talk to each other over mTLS by default, with
	// certificates from the control plane's CA: an invocation from pub's
	// sidecar to sub's crosses that connection.
	for _, p := range []*process{sub, pub} {
		m := p.waitLine(t, regexp.MustCompile(`msg="mTLS enabled" .*spiffe_id=(\S+)`))
		if want := "spiffe://public/ns/default/"; !strings.HasPrefix(m[1], want) {
			t.Errorf("spiffe_id %s, want one under %s", m[1], want)
		}
	}
	pubHTTP := pub.waitLine(t, sidecarReadyRE)[2]
	resp, err := http.Get("http://127.0.0.1:" + pubHTTP + "/v1.0/invoke/sub/method/dapr/subscribe")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"orders"`) {
		t.Fatalf("pub -> sub invocation over mTLS: %d %s", resp.StatusCode, body)
	}

	// With the subscriber gone, an event waits in the stream.
	e.must("stop", "--app-id", "sub")
	if err := sub.wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run of sub after mecha stop: %v\n%s", err, sub.out)
	}
	e.must("publish", "--app-id", "pub", "--pubsub", "pubsub", "--topic", "orders", "--data", `{"orderId":8}`)
	e.must("stop", "--app-id", "pub")
	if err := pub.wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run of pub after mecha stop: %v\n%s", err, pub.out)
	}

	// mecha stop --control-plane.
	out = e.must("stop", "--control-plane")
	if want := fmt.Sprintf("stopped the local control plane (pid %d)\n", st.PID); out != want {
		t.Fatalf("mecha stop --control-plane printed %q, want %q", out, want)
	}
	gone(t, st.PID)
	if after := cps.state(); after.PID != 0 || after.Broker != wantBroker {
		t.Errorf("state after stop = %+v, want pid 0 and the broker kept", after)
	}
	if _, _, err := healthz(st.Healthz); err == nil {
		t.Errorf("/healthz still answers at %s", st.Healthz)
	}
	if addrs := listeners(t, brokerPort); len(addrs) != 0 {
		t.Errorf("the broker port %d still has listeners %v", brokerPort, addrs)
	}
	if out := e.must("stop", "--control-plane"); out != "the local control plane is not running\n" {
		t.Errorf("second mecha stop --control-plane printed %q", out)
	}
	if entries, err := os.ReadDir(l.JetStreamDir()); err != nil || len(entries) == 0 {
		t.Fatalf("%s: %v, %d entries; want the broker's store", l.JetStreamDir(), err, len(entries))
	}

	// mecha run starts it again; the stream and the consumer's position
	// survived: the app gets the waiting event, and not the first again.
	sub = e.runSubscriber("orders")
	m := sub.waitLine(t, regexp.MustCompile(`msg="started the local control plane in the background" .*pid=(\d+) broker=(\S+)`))
	st2 := cps.state()
	if m[1] != strconv.Itoa(st2.PID) || m[2] != wantBroker || st2.PID == st.PID || !isControlPlane(st2.PID) {
		t.Fatalf("restarted control plane: logged pid %s broker %s, state %+v (first pid %d)", m[1], m[2], st2, st.PID)
	}
	evs = sub.waitEvents(t, "sub", 1)
	checkEvent(t, evs[0], "pub", "orders", map[string]any{"orderId": 8})
	time.Sleep(300 * time.Millisecond) // room for a wrong redelivery to show
	if evs = sub.events(t, "sub"); len(evs) != 1 {
		t.Errorf("after the restart the app got %d events, want only orderId 8: %v", len(evs), evs)
	}

	// Nothing under the home is world-writable (umask 0 in this process).
	err = filepath.WalkDir(l.Home, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file, gone meanwhile
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s is world-writable (%v)", path, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	e.must("stop", "--app-id", "sub")
	if err := sub.wait(t, 20*time.Second); err != nil {
		t.Fatalf("mecha run of sub: %v\n%s", err, sub.out)
	}
	e.must("stop", "--control-plane")
	gone(t, st2.PID)
}
