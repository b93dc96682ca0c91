package runtime_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mecha-dev/mecha/components/nameresolution/mdns"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// nrConfig writes a Configuration selecting a name resolution component.
func nrConfig(t *testing.T, component string, configuration ...string) string {
	t.Helper()
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: nr\nspec:\n  nameResolution:\n    component: " + component + "\n"
	if len(configuration) > 0 {
		doc += "    configuration:\n"
		for i := 0; i+1 < len(configuration); i += 2 {
			doc += fmt.Sprintf("      %s: %q\n", configuration[i], configuration[i+1])
		}
	}
	f := filepath.Join(t.TempDir(), "nr.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// echoApp answers every call with "<app> got <method> <path>".
func echoApp(t *testing.T, name string) int {
	return mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s got %s %s", name, r.Method, r.URL.Path)
	}))
}

// TestMDNSNameResolution: two sidecars configured with nameresolution.mdns
// find each other by multicast DNS (on the loopback interface) and invoke
// each other's apps.
func TestMDNSNameResolution(t *testing.T) {
	if err := mdns.Probe(context.Background(), ""); err != nil {
		t.Skipf("IPv4 multicast does not work on the loopback interface here, so mDNS cannot be exercised: %v", err)
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000)
	idA, idB := "mdns-a-"+run, "mdns-b-"+run
	cfg := nrConfig(t, "mdns", "browseTimeout", "500ms")
	a := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID, o.AppPort, o.ConfigFiles = idA, echoApp(t, "A"), []string{cfg}
	})
	b := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID, o.AppPort, o.ConfigFiles = idB, echoApp(t, "B"), []string{cfg}
	})
	for _, c := range []struct {
		from *mechatest.Sidecar
		to   string
		want string
	}{
		{a, idB, "B got POST /hello"},
		{b, idA, "A got POST /hello"},
		{a, idB + ".default", "B got POST /hello"},
	} {
		r := c.from.Do(t, "POST", "/v1.0/invoke/"+c.to+"/method/hello", "hi")
		if r.Status != 200 || string(r.Body) != c.want {
			t.Fatalf("invoke %s: %d %s; want 200 %q", c.to, r.Status, r.Body, c.want)
		}
	}
	// Another namespace has no such app; neither has the network an app nobody runs.
	for _, to := range []string{idB + ".production", "mdns-nobody-" + run} {
		r := a.Do(t, "POST", "/v1.0/invoke/"+to+"/method/hello", "hi")
		if r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "answered on mDNS") {
			t.Fatalf("invoke %s: %d %s; want 500 ERR_DIRECT_INVOKE saying no sidecar answered", to, r.Status, r.Body)
		}
	}
	// Once B is gone, A's cached address fails and the call says so.
	if err := b.RT.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := a.Do(t, "POST", "/v1.0/invoke/"+idB+"/method/hello", "hi"); r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" {
		t.Fatalf("invoke a closed sidecar: %d %s", r.Status, r.Body)
	}
}

// childEnv marks the process TestKubernetesNameResolution re-executes.
const childEnv = "MECHA_TEST_KUBERNETES_DNS_CHILD"

// TestKubernetesNameResolution: a sidecar configured with
// nameresolution.kubernetes calls {app}-dapr.{namespace}.svc.cluster.local
// on port 50002. The cluster is played by a DNS server in the test, which
// answers for orders-dapr.default.svc.cluster.local with a loopback address
// (127.x.y.z), and a TCP relay listening on that address's port 50002 in
// front of the orders sidecar's internal port: the call goes through the
// name and the port, or fails.
//
// The process-wide resolver (net.DefaultResolver) must point at that DNS
// server, which is only race-free before anything dials, so the test runs
// itself again in a child process where it is alone.
func TestKubernetesNameResolution(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKubernetesNameResolution$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("child process:\n%s", out)
		if skip := regexp.MustCompile(`(?m)^\s+nameresolution_test\.go:\d+: (SKIP: .*)$`).FindSubmatch(out); skip != nil {
			t.Skip(string(skip[1]))
		}
		if err != nil || !strings.Contains(string(out), "--- PASS: TestKubernetesNameResolution") {
			t.Fatalf("child process failed: %v", err)
		}
		return
	}

	cluster := newFakeCluster(t)
	orders := mechatest.Start(t, func(o *runtime.Options) { o.AppID, o.AppPort = "orders", echoApp(t, "orders") })
	if err := cluster.relay("orders-dapr.default.svc.cluster.local.", orders.InternalAddr); err != nil {
		t.Skipf("SKIP: cannot play the cluster: %v", err)
	}
	checkout := mechatest.Start(t, func(o *runtime.Options) {
		o.AppID, o.ConfigFiles = "checkout", []string{nrConfig(t, "kubernetes")}
	})

	for _, to := range []string{"orders", "orders.default"} {
		r := checkout.Do(t, "POST", "/v1.0/invoke/"+to+"/method/neworder", "{}")
		if r.Status != 200 || string(r.Body) != "orders got POST /neworder" {
			t.Fatalf("invoke %s: %d %s", to, r.Status, r.Body)
		}
	}
	if got := cluster.queried(); !slices.Contains(got, "orders-dapr.default.svc.cluster.local.") {
		t.Fatalf("DNS questions %v; want orders-dapr.default.svc.cluster.local.", got)
	}
	if n := cluster.relayed.Load(); n == 0 {
		t.Fatal("no connection reached the relay on port 50002")
	}

	// Another namespace is another name, which this cluster does not know.
	r := checkout.Do(t, "POST", "/v1.0/invoke/orders.production/method/neworder", "{}")
	if r.Status != 500 || r.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(r.Body), "orders-dapr.production.svc.cluster.local:50002") {
		t.Fatalf("invoke orders.production: %d %s; want 500 ERR_DIRECT_INVOKE naming the DNS address", r.Status, r.Body)
	}
	if got := cluster.queried(); !slices.Contains(got, "orders-dapr.production.svc.cluster.local.") {
		t.Fatalf("DNS questions %v; want orders-dapr.production.svc.cluster.local.", got)
	}
}

// fakeCluster is a DNS server with A records for some names, installed as
// the process's resolver, and TCP relays for those names' port 50002.
type fakeCluster struct {
	t       *testing.T
	mu      sync.Mutex
	records map[string]net.IP
	asked   []string
	relayed atomic.Int64
}

func newFakeCluster(t *testing.T) *fakeCluster {
	c := &fakeCluster{t: t, records: map[string]net.IP{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(c.answer)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ActivateAndServe(); err != nil {
			t.Errorf("fake DNS: %v", err)
		}
	}()
	<-started
	addr := pc.LocalAddr().String()
	// Never restored: this child process ends with the test, and a lookup
	// still in flight at cleanup (a sidecar's background dial) reads it.
	net.DefaultResolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return c
}

func (c *fakeCluster) answer(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	c.mu.Lock()
	for _, qq := range q.Question {
		c.asked = append(c.asked, strings.ToLower(qq.Name))
		ip, ok := c.records[strings.ToLower(qq.Name)]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case qq.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: ip})
		}
	}
	c.mu.Unlock()
	_ = w.WriteMsg(m)
}

func (c *fakeCluster) queried() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.asked)
}

// relay makes name resolve to a random loopback address (so that
// concurrent runs do not collide on port 50002) and forwards that address's
// port 50002 to target until the test ends.
func (c *fakeCluster) relay(name, target string) error {
	var b [3]byte
	_, _ = rand.Read(b[:])
	ip := net.IPv4(127, b[0], b[1], 2+b[2]%250)
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "50002"))
	if err != nil {
		return fmt.Errorf("listen on %s:50002, the port Kubernetes sidecars use: %w", ip, err)
	}
	c.mu.Lock()
	c.records[name] = ip
	c.mu.Unlock()
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					c.t.Errorf("relay: %v", err)
				}
				return
			}
			c.relayed.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			conns.Store(in, out)
			wg.Go(func() {
				_, _ = io.Copy(out, in)
				out.Close()
			})
			wg.Go(func() {
				_, _ = io.Copy(in, out)
				in.Close()
			})
		}
	})
	c.t.Cleanup(func() {
		l.Close()
		conns.Range(func(in, out any) bool {
			in.(net.Conn).Close()
			out.(net.Conn).Close()
			return true
		})
		wg.Wait()
	})
	return nil
}
