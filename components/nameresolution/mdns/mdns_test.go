package mdns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/nameresolutiontest"
)

// requireMulticast skips the test, saying why, when IPv4 multicast cannot
// be delivered on the loopback interface of this machine (the resolver's
// default interface).
func requireMulticast(t testing.TB) {
	t.Helper()
	if err := Probe(context.Background(), ""); err != nil {
		t.Skipf("IPv4 multicast does not work on the loopback interface here, so mDNS cannot be exercised: %v", err)
	}
}

func TestProbe(t *testing.T) {
	if err := Probe(context.Background(), "nosuch0"); err == nil {
		t.Fatal("Probe on a missing interface succeeded")
	}
	// A cancelled context ends the wait at once (the datagram may already
	// be back, so either answer is right, but not a 2s wait).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	begin := time.Now()
	err := Probe(ctx, "")
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("Probe with a cancelled context took %v (%v)", took, err)
	}
}

func props(kv ...string) components.Metadata {
	p := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return components.Metadata{Name: "nr", Type: "nameresolution.mdns", Properties: p}
}

// fast makes browses, expiry and refreshes short for tests.
var fast = props("browseTimeout", "300ms", "addressTTL", "1s", "refreshInterval", "250ms")

func unique() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func start(t testing.TB, md components.Metadata) *Resolver {
	t.Helper()
	r := New(components.Deps{})
	if err := r.Init(context.Background(), md); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func inst(app, id string, port int) nameresolution.Instance {
	return nameresolution.Instance{InstanceID: id, AppID: app, Namespace: "default", Address: "127.0.0.1:" + strconv.Itoa(port), InternalPort: port}
}

func TestConformance(t *testing.T) {
	requireMulticast(t)
	nameresolutiontest.Run(t, nameresolutiontest.Options{
		New:      func(testing.TB) nameresolution.Resolver { return New(components.Deps{}) },
		Metadata: fast,
		// A killed sidecar stops answering; the others drop it after addressTTL.
		Crash:  func(r nameresolution.Resolver) { r.(*Resolver).abandon() },
		Expiry: 5 * time.Second,
	})
}

// TestAnnouncementIsDaprs checks the records on the wire: service type =
// app id in local., one instance per sidecar, SRV port = internal port,
// TXT = app id (then Mecha's namespace), A = the announced address.
func TestAnnouncementIsDaprs(t *testing.T) {
	requireMulticast(t)
	r := start(t, fast)
	app := "shop-" + unique()
	if err := r.Register(context.Background(), nameresolution.Instance{InstanceID: "sidecar-1", AppID: app, Namespace: "prod", Address: "127.0.0.1:47301"}); err != nil {
		t.Fatal(err)
	}
	q, err := newQuerier(r.iface, r.src, app+".local.")
	if err != nil {
		t.Fatal(err)
	}
	defer q.close()
	if err := q.send(0); err != nil {
		t.Fatal(err)
	}
	_ = q.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := q.conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rr := range append(m.Answer, m.Extra...) {
		switch rr := rr.(type) {
		case *dns.PTR:
			got = append(got, "PTR "+rr.Hdr.Name+" "+rr.Ptr)
		case *dns.SRV:
			got = append(got, fmt.Sprintf("SRV %s %d %s", rr.Hdr.Name, rr.Port, rr.Target))
		case *dns.TXT:
			got = append(got, "TXT "+rr.Hdr.Name+" "+strings.Join(rr.Txt, ","))
		case *dns.A:
			got = append(got, "A "+rr.Hdr.Name+" "+rr.A.String())
		}
	}
	slices.Sort(got)
	want := []string{
		"A sidecar-1.local. 127.0.0.1",
		"PTR " + app + ".local. sidecar-1." + app + ".local.",
		"SRV sidecar-1." + app + ".local. 47301 sidecar-1.local.",
		"TXT sidecar-1." + app + ".local. " + app + ",namespace=prod",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !m.Response || !m.Authoritative {
		t.Errorf("header %+v: want an authoritative response", m.MsgHdr)
	}
}

// TestResolveReturnsEarly: a miss returns once the first answers came in,
// long before browseTimeout; unknown apps take the whole browse.
func TestResolveReturnsEarly(t *testing.T) {
	requireMulticast(t)
	slow := props("browseTimeout", "4s", "addressTTL", "60s", "refreshInterval", "30s")
	server, client := start(t, slow), start(t, slow)
	app := "early-" + unique()
	if err := server.Register(context.Background(), inst(app, "i1", 47310)); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	got, err := client.Resolve(context.Background(), nameresolution.ResolveRequest{ID: app, Namespace: "default"})
	if took := time.Since(begin); err != nil || !slices.Equal(got, []string{"127.0.0.1:47310"}) || took > time.Second {
		t.Fatalf("Resolve = %v, %v after %v; want [127.0.0.1:47310] well within the 4s browse", got, err, took)
	}
	// App ids keep their case.
	mixed := "Early-" + unique()
	if err := server.Register(context.Background(), inst(mixed, "i2", 47311)); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Resolve(context.Background(), nameresolution.ResolveRequest{ID: mixed, Namespace: "default"}); err != nil || !slices.Equal(got, []string{"127.0.0.1:47311"}) {
		t.Fatalf("Resolve(%s) = %v, %v", mixed, got, err)
	}
	// A cancelled context ends the wait for an app nobody serves.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin = time.Now()
	if _, err := client.Resolve(ctx, nameresolution.ResolveRequest{ID: "nobody-" + unique()}); !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > time.Second {
		t.Fatalf("Resolve with a short deadline = %v after %v; want DeadlineExceeded soon", err, time.Since(begin))
	}
}

// TestRefreshFindsNewInstances: a cached app is browsed again in the
// background, so an instance that appears later is resolved without a miss.
func TestRefreshFindsNewInstances(t *testing.T) {
	requireMulticast(t)
	md := props("browseTimeout", "200ms", "addressTTL", "10s", "refreshInterval", "200ms")
	s1, s2, client := start(t, md), start(t, md), start(t, md)
	app := "growing-" + unique()
	if err := s1.Register(context.Background(), inst(app, "i1", 47320)); err != nil {
		t.Fatal(err)
	}
	req := nameresolution.ResolveRequest{ID: app, Namespace: "default"}
	if got, err := client.Resolve(context.Background(), req); err != nil || len(got) != 1 {
		t.Fatalf("Resolve = %v, %v", got, err)
	}
	if err := s2.Register(context.Background(), inst(app, "i2", 47321)); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:47320", "127.0.0.1:47321"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := client.Resolve(context.Background(), req)
		if err == nil && slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Resolve = %v, %v; want %v after a refresh", got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCloseStopsGoroutines: Close waits for the resolver's browses and
// refresher, and the responders it started stop too.
func TestCloseStopsGoroutines(t *testing.T) {
	requireMulticast(t)
	r := New(components.Deps{})
	if err := r.Init(context.Background(), props("browseTimeout", "5s", "addressTTL", "60s", "refreshInterval", "100ms")); err != nil {
		t.Fatal(err)
	}
	app := "stopping-" + unique()
	if err := r.Register(context.Background(), inst(app, "i1", 47330)); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "nobody-" + unique()})
	}()
	waitFor(t, "a browse is running", func() bool { return strings.Contains(stacks(), "(*Resolver).fly") })
	begin := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Close took %v with a 5s browse running; it should end it", took)
	}
	waitFor(t, "no mdns goroutine left", func() bool {
		s := stacks()
		return !strings.Contains(s, "nameresolution/mdns.(*") && !strings.Contains(s, "hashicorp/mdns.")
	})
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 5s\n%s", what, stacks())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	cases := []struct {
		name    string
		md      components.Metadata
		wantErr string
	}{
		{"browse timeout", props("browseTimeout", "0s"), "browseTimeout"},
		{"not a duration", props("addressTTL", "soon"), "addressTTL"},
		{"negative ttl", props("addressTTL", "-1s"), "addressTTL"},
		{"refresh not shorter than ttl", props("addressTTL", "10s", "refreshInterval", "10s"), "shorter than addressTTL"},
		{"unknown interface", props("interface", "nosuch0"), `metadata "interface"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := New(components.Deps{})
			defer r.Close()
			if err := r.Init(context.Background(), c.md); err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Init error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
	got, err := parseConfig(props("browseTimeout", "2", "addressTTL", "90", "refreshInterval", "45s"))
	if err != nil || got.BrowseTimeout != 2*time.Second || got.AddressTTL != 90*time.Second || got.RefreshInterval != 45*time.Second || got.Interface != "" {
		t.Fatalf("parseConfig = %+v, %v", got, err)
	}
	got, err = parseConfig(props())
	if err != nil || got.BrowseTimeout != time.Second || got.AddressTTL != time.Minute || got.RefreshInterval != 30*time.Second {
		t.Fatalf("defaults = %+v, %v; want Dapr's 1s browse, 60s TTL, 30s refresh", got, err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	r := New(components.Deps{})
	in := inst("a", "i", 47340)
	if err := r.Register(context.Background(), in); err == nil || !strings.Contains(err.Error(), "not initialised") {
		t.Fatalf("Register before Init: %v", err)
	}
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "a"}); err == nil || !strings.Contains(err.Error(), "not initialised") {
		t.Fatalf("Resolve before Init: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close before Init: %v", err)
	}
	if err := r.Init(context.Background(), fast); err == nil {
		t.Fatal("Init after Close succeeded")
	}

	r = start(t, fast)
	if err := r.Init(context.Background(), fast); err == nil {
		t.Fatal("second Init succeeded")
	}
	bad := []struct {
		in      nameresolution.Instance
		wantErr string
	}{
		{inst("a.b", "i", 1), "cannot be an mDNS service name"},
		{inst(strings.Repeat("a", 64), "i", 1), "cannot be an mDNS service name"},
		{inst("a", "", 1), "no id"},
		{nameresolution.Instance{InstanceID: "i", AppID: "a", Address: "localhost:1"}, "not a host name"},
		{nameresolution.Instance{InstanceID: "i", AppID: "a", Address: "127.0.0.1"}, "missing port"},
		{nameresolution.Instance{InstanceID: "i", AppID: "a", Address: "127.0.0.1:0"}, "no usable port"},
	}
	for _, c := range bad {
		if err := r.Register(context.Background(), c.in); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("Register(%+v) = %v, want an error containing %q", c.in, err, c.wantErr)
		}
	}
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "x.y"}); err == nil || !strings.Contains(err.Error(), "cannot be an mDNS service name") {
		t.Errorf("Resolve(x.y) = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(context.Background(), in); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Register after Close: %v", err)
	}
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "a"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Resolve after Close: %v", err)
	}
}

func TestInstanceLabel(t *testing.T) {
	long := strings.Repeat("x", 70)
	if got := instanceLabel("0b7c2a9e-1f3d-4c55-9a0e-6e2b8f4d1c3a"); got != "0b7c2a9e-1f3d-4c55-9a0e-6e2b8f4d1c3a" {
		t.Errorf("uuid label = %q", got)
	}
	if got := instanceLabel("host.example:42"); got != "host-example:42" {
		t.Errorf("dotted label = %q", got)
	}
	a, b := instanceLabel(long+"a"), instanceLabel(long+"b")
	if len(a) != 63 || a == b {
		t.Errorf("long labels %q (%d), %q: want 63 bytes and distinct", a, len(a), b)
	}
}

// TestAssembler feeds answers shaped as various responders send them.
func TestAssembler(t *testing.T) {
	const svc = "orders.local."
	hdr := func(name string, typ uint16, ttl uint32) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
	}
	ptr := func(inst string, ttl uint32) dns.RR {
		return &dns.PTR{Hdr: hdr(svc, dns.TypePTR, ttl), Ptr: inst + "." + svc}
	}
	srv := func(inst, target string, port uint16) dns.RR {
		return &dns.SRV{Hdr: hdr(inst+"."+svc, dns.TypeSRV, 120), Port: port, Target: target}
	}
	txtRR := func(inst string, fields ...string) dns.RR {
		return &dns.TXT{Hdr: hdr(inst+"."+svc, dns.TypeTXT, 120), Txt: fields}
	}
	a4 := func(host, ip string) dns.RR { return &dns.A{Hdr: hdr(host, dns.TypeA, 120), A: net.ParseIP(ip)} }
	a6 := func(host, ip string) dns.RR {
		return &dns.AAAA{Hdr: hdr(host, dns.TypeAAAA, 120), AAAA: net.ParseIP(ip)}
	}
	msg := func(answer []dns.RR, extra ...dns.RR) *dns.Msg {
		return &dns.Msg{MsgHdr: dns.MsgHdr{Response: true}, Answer: answer, Extra: extra}
	}
	src := &net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 5353, Zone: "eth9"}

	t.Run("daprd style: records in the additional section, no namespace", func(t *testing.T) {
		asm := newAssembler("ORDERS.local.")
		got := asm.add(msg([]dns.RR{ptr("host:42", 120)}, srv("host:42", "host.local.", 47300), txtRR("host:42", "orders"), a4("host.local.", "192.0.2.7")), src)
		want := []sighting{{instance: "host:42.orders.local.", addr: "192.0.2.7:47300", ttl: 120 * time.Second}}
		if !slices.Equal(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
	})
	t.Run("address in a later message, namespace, IPv4 first", func(t *testing.T) {
		asm := newAssembler(svc)
		if got := asm.add(msg([]dns.RR{ptr("i1", 120), srv("i1", "h1.local.", 1234), txtRR("i1", "orders", "namespace=prod")}), src); len(got) != 0 {
			t.Fatalf("incomplete instance reported: %+v", got)
		}
		got := asm.add(msg([]dns.RR{a6("h1.local.", "2001:db8::1"), a4("h1.local.", "192.0.2.8")}), src)
		want := []sighting{{instance: "i1.orders.local.", addr: "192.0.2.8:1234", ns: "prod", nsKnown: true, ttl: 120 * time.Second}}
		if !slices.Equal(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		// Every answer is a sighting (it keeps the instance cached), but
		// only for the instances it speaks of.
		if again := asm.add(msg([]dns.RR{a4("h1.local.", "192.0.2.8")}), src); !slices.Equal(again, want) {
			t.Fatalf("second answer: got %+v, want %+v", again, want)
		}
		other := asm.add(msg([]dns.RR{ptr("i2", 120), srv("i2", "h2.local.", 99), txtRR("i2", "orders"), a4("h2.local.", "192.0.2.9")}), src)
		if len(other) != 1 || other[0].instance != "i2.orders.local." {
			t.Fatalf("answer for i2 reported %+v", other)
		}
	})
	t.Run("IPv6 only, link-local gets the zone", func(t *testing.T) {
		asm := newAssembler(svc)
		got := asm.add(msg([]dns.RR{ptr("i6", 120), srv("i6", "h6.local.", 80), txtRR("i6", "orders"), a6("h6.local.", "fe80::2")}), src)
		if len(got) != 1 || got[0].addr != "[fe80::2%eth9]:80" {
			t.Fatalf("got %+v, want [fe80::2%%eth9]:80", got)
		}
	})
	t.Run("goodbye", func(t *testing.T) {
		asm := newAssembler(svc)
		asm.add(msg([]dns.RR{ptr("i1", 120), srv("i1", "h.local.", 1), txtRR("i1", "orders"), a4("h.local.", "192.0.2.1")}), src)
		got := asm.add(msg([]dns.RR{ptr("i1", 0)}), src)
		if len(got) != 1 || !got[0].gone {
			t.Fatalf("got %+v, want one goodbye", got)
		}
	})
	t.Run("other services and non-answers are ignored", func(t *testing.T) {
		asm := newAssembler(svc)
		other := &dns.PTR{Hdr: hdr("payments.local.", dns.TypePTR, 120), Ptr: "i1.payments.local."}
		got := asm.add(msg([]dns.RR{other,
			&dns.SRV{Hdr: hdr("i1.payments.local.", dns.TypeSRV, 120), Port: 9, Target: "h.local."},
			&dns.TXT{Hdr: hdr("i1.payments.local.", dns.TypeTXT, 120), Txt: []string{"payments"}},
			a4("h.local.", "192.0.2.1")}), src)
		if len(got) != 0 {
			t.Fatalf("got %+v from another service", got)
		}
	})
}

// TestCacheExpiry drives the cache with a fake clock.
func TestCacheExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	r := New(components.Deps{})
	r.now = func() time.Time { return now }
	r.cfg.AddressTTL = 60 * time.Second
	a := &app{service: "orders.local.", entries: map[string]entry{}}
	f := &flight{wake: make(chan struct{})}
	wake := f.wake
	r.record(a, f, sighting{instance: "i1", addr: "127.0.0.1:1", ns: "default", nsKnown: true, ttl: 120 * time.Second})
	r.record(a, f, sighting{instance: "i2", addr: "127.0.0.1:2", ns: "prod", nsKnown: true, ttl: 120 * time.Second})
	r.record(a, f, sighting{instance: "d", addr: "127.0.0.1:3", ttl: 10 * time.Second}) // daprd: any namespace, short record TTL
	if !isDone(wake) {
		t.Fatal("record did not wake the waiters")
	}
	if got := a.live("default", now); !slices.Equal(got, []string{"127.0.0.1:1", "127.0.0.1:3"}) {
		t.Fatalf("live(default) = %v", got)
	}
	if got := a.live("prod", now.Add(11*time.Second)); !slices.Equal(got, []string{"127.0.0.1:2"}) {
		t.Fatalf("live(prod) after the record TTL of d = %v", got)
	}
	if got := a.live("default", now.Add(60*time.Second)); len(got) != 0 || len(a.entries) != 0 {
		t.Fatalf("after addressTTL: live = %v, entries = %v", got, a.entries)
	}
	r.record(a, f, sighting{instance: "i1", addr: "127.0.0.1:1", ns: "default", nsKnown: true})
	r.record(a, f, sighting{instance: "i1", gone: true})
	if len(a.entries) != 0 {
		t.Fatalf("goodbye left %v", a.entries)
	}
}
