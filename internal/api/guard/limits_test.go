package guard_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/mecha-dev/mecha/internal/api/guard"
	"github.com/mecha-dev/mecha/internal/mechatest"
	mrt "github.com/mecha-dev/mecha/internal/runtime"
)

// TestLimitsDefaults pins the defaults to daprd's values.
func TestLimitsDefaults(t *testing.T) {
	srv := guard.Limits{}.HTTPServer(http.NotFoundHandler(), nil)
	if srv.ReadHeaderTimeout != 10*time.Second || srv.MaxHeaderBytes != 4<<10 || srv.IdleTimeout != 2*time.Minute {
		t.Fatalf("defaults: ReadHeaderTimeout %v, MaxHeaderBytes %d, IdleTimeout %v", srv.ReadHeaderTimeout, srv.MaxHeaderBytes, srv.IdleTimeout)
	}
	if len(guard.Limits{}.GRPCServerOptions()) == 0 {
		t.Fatal("no gRPC server options")
	}
}

// waitClosed reads from c until the server closes it, and returns how long
// that took; it fails the test after limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", limit)
	}
	return time.Since(start)
}

// trickle writes s one byte every gap until stop is closed or a write
// fails, the way a slow-loris client does.
func trickle(c net.Conn, s string, gap time.Duration, stop <-chan struct{}) {
	for i := 0; ; i++ {
		if _, err := c.Write([]byte{s[i%len(s)]}); err != nil {
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(gap):
		}
	}
}

// TestSlowLoris: a client that sends its request headers (HTTP) or its
// connection preface (gRPC) a byte at a time, never finishing, is cut off
// after ReadHeaderTimeout on every server of the sidecar, while normal
// clients keep being served.
func TestSlowLoris(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := mechatest.Start(t, func(o *mrt.Options) { o.ReadHeaderTimeout = timeout })
	servers := []struct {
		name, addr, start, loop string
	}{
		// Headers that never end: a new header line every few bytes.
		{"HTTP API", s.RT.HTTPAddr(), "GET /v1.0/healthz/outbound HTTP/1.1\r\nHost: x\r\n", "X-Slow: y\r\n"},
		{"gRPC API", s.RT.GRPCAddr(), "", http2.ClientPreface},
		{"internal gRPC", s.InternalAddr, "", http2.ClientPreface},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, srv.start); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				trickle(c, srv.loop, 20*time.Millisecond, stop)
			}()
			took := waitClosed(t, c, 10*timeout)
			close(stop)
			<-done
			if took < timeout*8/10 {
				t.Fatalf("closed after %v, before the %v timeout: not the timeout at work", took, timeout)
			}
			t.Logf("cut off after %v", took)
		})
	}
	// The servers still serve well-behaved clients.
	if r := s.Do(t, "GET", "/v1.0/healthz/outbound", nil); r.Status != http.StatusNoContent {
		t.Fatalf("healthz/outbound after the slow clients: %d", r.Status)
	}
}

// headerRequest sends GET /v1.0/healthz/outbound with a header of n bytes
// and returns the status.
func headerRequest(t *testing.T, addr string, n int) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/v1.0/healthz/outbound", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", n))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("header of %d bytes: %v", n, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestHeaderLimit: request headers over the limit get 431, under it pass;
// --read-buffer-size (Options.ReadBufferSize) moves the limit.
func TestHeaderLimit(t *testing.T) {
	def := mechatest.Start(t, nil)
	big := mechatest.Start(t, func(o *mrt.Options) { o.AppID = "big-headers"; o.ReadBufferSize = 64 << 10 })
	cases := []struct {
		name string
		addr string
		size int
		want int
	}{
		{"default, 3 KiB", def.RT.HTTPAddr(), 3 << 10, http.StatusNoContent},
		// net/http allows 4 KiB over MaxHeaderBytes, as for daprd.
		{"default, 16 KiB", def.RT.HTTPAddr(), 16 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"default, 1 MiB", def.RT.HTTPAddr(), 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
		{"64 KiB limit, 16 KiB", big.RT.HTTPAddr(), 16 << 10, http.StatusNoContent},
		{"64 KiB limit, 80 KiB", big.RT.HTTPAddr(), 80 << 10, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, c := range cases {
		if got := headerRequest(t, c.addr, c.size); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// serverSettings opens an HTTP/2 connection to a gRPC server and returns
// the settings it announces.
func serverSettings(t *testing.T, addr string) map[http2.SettingID]uint32 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, bufio.NewReader(c))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's settings: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			out := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error {
				out[s.ID] = s.Val
				return nil
			})
			return out
		}
	}
}

// TestGRPCServerSettings: both gRPC servers announce the stream bound and
// the header list limit (1024 × the read buffer size, as daprd).
func TestGRPCServerSettings(t *testing.T) {
	def := mechatest.Start(t, nil)
	small := mechatest.Start(t, func(o *mrt.Options) { o.AppID = "small-headers"; o.ReadBufferSize = 1 << 10 })
	for _, c := range []struct {
		name, addr string
		headers    uint32
	}{
		{"API default", def.RT.GRPCAddr(), 4 << 20},
		{"internal default", def.InternalAddr, 4 << 20},
		{"API 1 KiB", small.RT.GRPCAddr(), 1 << 20},
		{"internal 1 KiB", small.InternalAddr, 1 << 20},
	} {
		s := serverSettings(t, c.addr)
		if got := s[http2.SettingMaxConcurrentStreams]; got != guard.MaxConcurrentStreams {
			t.Errorf("%s: SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", c.name, got, guard.MaxConcurrentStreams)
		}
		if got := s[http2.SettingMaxHeaderListSize]; got != c.headers {
			t.Errorf("%s: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d", c.name, got, c.headers)
		}
	}
}

// TestGRPCPingFlood: a client that pings faster than the keepalive policy
// allows is disconnected with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
func TestGRPCPingFlood(t *testing.T) {
	s := mechatest.Start(t, nil)
	for _, addr := range []string{s.RT.GRPCAddr(), s.InternalAddr} {
		t.Run(addr, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(c, bufio.NewReader(c))
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
					break // closed already
				}
			}
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("connection ended without GOAWAY: %v", err)
				}
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || string(ga.DebugData()) != "too_many_pings" {
						t.Fatalf("GOAWAY %v %q", ga.ErrCode, ga.DebugData())
					}
					return
				}
			}
		})
	}
}

// listeners returns the local IPs of the listening TCP sockets on port,
// read from /proc/net/tcp and tcp6 (the sockets of this network namespace).
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var ips []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Skipf("no %s: %v", f, err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexIP, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			raw, err := hex.DecodeString(hexIP)
			if err != nil {
				t.Fatalf("%s: %q", f, fields[1])
			}
			// The kernel prints each 32-bit word in host (little-endian) order.
			for i := 0; i+4 <= len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			ips = append(ips, net.IP(raw).String())
		}
	}
	return ips
}

// TestLoopbackByDefault: with default options every server of the sidecar
// listens on 127.0.0.1 only, so nothing off the host can reach the APIs.
func TestLoopbackByDefault(t *testing.T) {
	s := mechatest.Start(t, nil)
	for name, addr := range map[string]string{"HTTP API": s.RT.HTTPAddr(), "gRPC API": s.RT.GRPCAddr(), "internal gRPC": s.InternalAddr} {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		ips := listeners(t, p)
		if len(ips) == 0 {
			t.Fatalf("%s: no listener on port %d found", name, p)
		}
		for _, ip := range ips {
			if ip != "127.0.0.1" {
				t.Errorf("%s listens on %s:%d, want 127.0.0.1 only", name, ip, p)
			}
		}
	}
}
