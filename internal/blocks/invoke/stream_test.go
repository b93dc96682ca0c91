package invoke_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// pattern is an endless deterministic byte stream (a counter), so that
// both ends can check what went through without keeping it.
type pattern struct {
	left int64
	off  int64
	h    hash.Hash
}

func newPattern(n int64) *pattern { return &pattern{left: n, h: sha256.New()} }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(b)), p.left))
	for i := range n {
		b[i] = byte((p.off + int64(i)) * 7 % 251)
	}
	p.h.Write(b[:n])
	p.off += int64(n)
	p.left -= int64(n)
	return n, nil
}

func (p *pattern) sum() string { return hex.EncodeToString(p.h.Sum(nil)) }

// heapWatch samples HeapInuse until stopped and reports the peak above the
// level at start.
type heapWatch struct {
	base, peak uint64
	gcPercent  int
	stop       chan struct{}
	wg         sync.WaitGroup
}

func watchHeap() *heapWatch {
	// Collect often, so that the peak follows what is live (a buffered
	// body) rather than garbage waiting for the next cycle.
	old := debug.SetGCPercent(10)
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	w := &heapWatch{base: ms.HeapInuse, peak: ms.HeapInuse, stop: make(chan struct{}), gcPercent: old}
	w.wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			w.peak = max(w.peak, ms.HeapInuse)
		}
	})
	return w
}

func (w *heapWatch) done() uint64 {
	close(w.stop)
	w.wg.Wait()
	debug.SetGCPercent(w.gcPercent)
	return w.peak - w.base
}

const bigBody = 50 << 20

// TestInvokeLargeBodyStreams sends 50 MiB to an app and gets 50 MiB back
// through two sidecars, with and without a known length, and checks that
// nothing on the way held the body: the heap grows by far less than it.
func TestInvokeLargeBodyStreams(t *testing.T) {
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("X-Received", strconv.FormatInt(n, 10))
		w.Header().Set("X-Sha256", hex.EncodeToString(h.Sum(nil)))
		out := newPattern(bigBody)
		if r.URL.Query().Get("length") == "known" {
			w.Header().Set("Content-Length", strconv.Itoa(bigBody))
		}
		w.WriteHeader(200)
		io.Copy(w, out)
	}))
	big := func(o *runtime.Options) { o.MaxBodySize = 64 << 20 }
	a, _ := pair(t, port, "", big)
	// Warm the connections up so that pools do not count as growth.
	if r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/warm", bytes.NewReader(make([]byte, 100))); r.Status != 200 {
		t.Fatalf("warm-up: %d %s", r.Status, r.Body)
	}
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known length %v", known), func(t *testing.T) {
			in := newPattern(bigBody)
			var body io.Reader = in
			q := "unknown"
			if known {
				q = "known"
			} else {
				body = struct{ io.Reader }{in} // hide the length: chunked upload
			}
			req, _ := http.NewRequest("PUT", a.URL+"/v1.0/invoke/b/method/big?length="+q, body)
			if known {
				req.ContentLength = bigBody
			}
			watch := watchHeap()
			resp, err := client.Do(req)
			if err != nil {
				watch.done()
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			growth := watch.done()
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("response: %d, read %d bytes: %v", resp.StatusCode, n, err)
			}
			if got := resp.Header.Get("X-Received"); got != strconv.Itoa(bigBody) || resp.Header.Get("X-Sha256") != in.sum() {
				t.Fatalf("the app received %s bytes with sha256 %s, want %d bytes %s", got, resp.Header.Get("X-Sha256"), bigBody, in.sum())
			}
			want := newPattern(bigBody)
			io.Copy(io.Discard, want)
			if n != bigBody || hex.EncodeToString(h.Sum(nil)) != want.sum() {
				t.Fatalf("the caller received %d bytes, want %d with the app's content", n, bigBody)
			}
			if cl := resp.ContentLength; known && cl != bigBody {
				t.Errorf("response Content-Length = %d, want %d", cl, bigBody)
			}
			t.Logf("heap growth during 2 × 50 MiB through two sidecars: %.1f MiB", float64(growth)/(1<<20))
			if growth > 16<<20 {
				t.Fatalf("heap grew by %.1f MiB while streaming 50 MiB each way: a body is being buffered", float64(growth)/(1<<20))
			}
		})
	}
}

// TestInvokeBodyLimit: the HTTP body limit applies to invocations too.
func TestInvokeBodyLimit(t *testing.T) {
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return // the sidecar cut the body short: expected
		}
	}))
	a, _ := pair(t, port, "", func(o *runtime.Options) { o.MaxBodySize = 1 << 20 })
	r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/x", bytes.NewReader(make([]byte, 2<<20)))
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("known length over the limit: %d %s", r.Status, r.Body)
	}
	r = do(t, "POST", a.URL+"/v1.0/invoke/b/method/x", struct{ io.Reader }{bytes.NewReader(make([]byte, 3<<20))})
	if r.Status != http.StatusRequestEntityTooLarge || r.errorCode() != "ERR_BODY_TOO_LARGE" {
		t.Fatalf("streamed body over the limit: %d %s", r.Status, r.Body)
	}
}

// registerFake announces an instance of app id at addr in the test's
// registry, as another sidecar would.
func registerFake(t *testing.T, id, addr string) {
	t.Helper()
	r := sqlite.New(components.Deps{})
	if err := r.Init(ctx(t), components.Metadata{Properties: map[string]string{"connectionString": mechatest.Registry(t)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Register(ctx(t), nameresolution.Instance{InstanceID: "fake-" + addr, AppID: id, Namespace: "default", Address: addr}); err != nil {
		t.Fatal(err)
	}
}

func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestInvokeDeadInstanceRetried: an instance left in the registry by a
// crashed sidecar is skipped, and its calls go to the live one.
func TestInvokeDeadInstanceRetried(t *testing.T) {
	var calls atomic.Int32
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	registerFake(t, "b", deadAddr(t))
	registerFake(t, "b", deadAddr(t))
	a, _ := pair(t, port, "")
	for i := range 12 {
		body := fmt.Sprintf("call %d", i)
		if r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/x", strBody(body)); r.Status != 200 || string(r.Body) != body {
			t.Fatalf("call %d: %d %s", i, r.Status, r.Body)
		}
	}
	if n := calls.Load(); n != 12 {
		t.Fatalf("the app got %d calls, want 12", n)
	}
	// A streamed body cannot be sent again, but nothing of it was sent to
	// a sidecar that could not be reached, so it is retried too.
	a.RT.Close(ctx(t))
	a = mechatest.Start(t, func(o *runtime.Options) { o.AppID = "a2" })
	for i := range 6 {
		r := do(t, "POST", a.URL+"/v1.0/invoke/b/method/x", struct{ io.Reader }{bytes.NewReader(make([]byte, 2<<20))})
		if r.Status != 200 || len(r.Body) != 2<<20 {
			t.Fatalf("streamed call %d: %d (%d bytes)", i, r.Status, len(r.Body))
		}
	}
}

// TestInvokeOnlyDeadInstances: with no live instance the call fails after
// daprd's built-in retries (DaprBuiltInServiceRetries: 3 retries, 1s
// apart), not later.
func TestInvokeOnlyDeadInstances(t *testing.T) {
	registerFake(t, "ghost", deadAddr(t))
	a := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "a" })
	start := time.Now()
	r := do(t, "GET", a.URL+"/v1.0/invoke/ghost/method/x", nil)
	if r.Status != 500 || r.errorCode() != "ERR_DIRECT_INVOKE" || !bytes.Contains(r.Body, []byte("attempt 4 of 4")) {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	if d := time.Since(start); d < 2900*time.Millisecond || d > 6*time.Second {
		t.Fatalf("failing took %v, want about 3s", d)
	}
}
