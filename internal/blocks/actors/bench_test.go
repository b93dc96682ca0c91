package actors_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/blocks/actors/actorstest"
)

// benchCalls times n sequential POSTs to url and reports p50 and p99.
func benchCalls(b *testing.B, client *http.Client, url string) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPut, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: (&net.Dialer{}).DialContext}}
}

// BenchmarkActorCall compares a warm actor method call through the local
// sidecar (owner local), through two sidecars (forwarded to the owner),
// and the same request sent to the app directly.
func BenchmarkActorCall(b *testing.B) {
	c := actorstest.NewCluster()
	store := sqliteStore(nil, filepath.Join(b.TempDir(), "state.db"))
	appA := newActorApp(b, "a", counterConfig("1h", "1h"))
	a := startNode(b, c, "bench", appA, store, nil)
	caller := startNode(b, c, "bench-caller", nil, "", nil)
	waitHosting(b, a)
	waitHosting(b, caller)
	client := benchClient()
	b.Run("through-sidecar", func(b *testing.B) {
		benchCalls(b, client, a.URL+"/v1.0/actors/Counter/warm/method/whoami")
	})
	b.Run("through-two-sidecars", func(b *testing.B) {
		benchCalls(b, client, caller.URL+"/v1.0/actors/Counter/warm/method/whoami")
	})
	b.Run("direct-to-app", func(b *testing.B) {
		benchCalls(b, client, fmt.Sprintf("http://127.0.0.1:%d/actors/Counter/warm/method/whoami", a.appPort))
	})
	b.Run("activation", func(b *testing.B) {
		i := 0
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			i++
			start := time.Now()
			resp, err := client.Post(a.URL+"/v1.0/actors/Counter/new-"+strconv.Itoa(i)+"/method/whoami", "", nil)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	})
}

// fixedRate sends b.N PUTs to url at rate per second, each on its own
// goroutine (open loop: a slow answer does not delay the next send), and
// reports p50 and p99 measured from each request's scheduled send time, so
// queueing delay counts (no coordinated omission).
func fixedRate(b *testing.B, client *http.Client, url string, rate int) {
	fixedRateURLs(b, client, func(int) string { return url }, rate)
}

// fixedRateURLs is fixedRate with the i-th call sent to url(i).
func fixedRateURLs(b *testing.B, client *http.Client, url func(int) string, rate int) {
	b.Helper()
	n := b.N
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPut, url(i), nil)
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			lat[i] = time.Since(at)
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[n*99/100].Microseconds()), "p99-µs")
}

// BenchmarkActorCallRate is BenchmarkActorCall at a fixed 1,000 calls/s,
// the rate the issue compares daprd at; -benchtime sets the number of
// calls (e.g. 5000x: five seconds).
func BenchmarkActorCallRate(b *testing.B) {
	c := actorstest.NewCluster()
	store := sqliteStore(nil, filepath.Join(b.TempDir(), "state.db"))
	a := startNode(b, c, "rate", newActorApp(b, "a", counterConfig("1h", "1h")), store, nil)
	caller := startNode(b, c, "rate-caller", nil, "", nil)
	waitHosting(b, a)
	waitHosting(b, caller)
	client := benchClient()
	warm := func(url string) {
		req, _ := http.NewRequest(http.MethodPut, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for _, tc := range []struct{ name, url string }{
		{"through-sidecar", a.URL + "/v1.0/actors/Counter/warm/method/whoami"},
		{"through-two-sidecars", caller.URL + "/v1.0/actors/Counter/warm/method/whoami"},
		{"direct-to-app", fmt.Sprintf("http://127.0.0.1:%d/actors/Counter/warm/method/whoami", a.appPort)},
	} {
		warm(tc.url)
		b.Run(tc.name, func(b *testing.B) { fixedRate(b, client, tc.url, 1000) })
	}
	// 100 warm actors, called in turn: turn-based concurrency no longer
	// queues the calls of one actor behind each other.
	ids := func(base string) func(int) string {
		return func(i int) string { return base + "/v1.0/actors/Counter/w" + strconv.Itoa(i%100) + "/method/whoami" }
	}
	for i := range 100 {
		warm(ids(a.URL)(i))
	}
	b.Run("100-actors-through-sidecar", func(b *testing.B) { fixedRateURLs(b, client, ids(a.URL), 1000) })
	b.Run("100-actors-through-two-sidecars", func(b *testing.B) { fixedRateURLs(b, client, ids(caller.URL), 1000) })
}
