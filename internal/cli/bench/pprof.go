package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// pprofEnv, when set to a loopback host:port in the environment of any
// mecha process (this package is linked into the one binary, so `mecha
// sidecar` and `mecha bench app` included), makes that process serve
// CPU profiles there: GET /profile?seconds=N. `mecha bench invoke-all
// --profile DIR` sets it for the processes it starts, to profile them
// under load without changing the runtime. Nothing happens when it is
// unset, and only loopback addresses are accepted.
const pprofEnv = "MECHA_BENCH_PPROF_ADDR"

func init() {
	if addr := os.Getenv(pprofEnv); addr != "" {
		if err := servePprof(addr); err != nil {
			fmt.Fprintf(os.Stderr, "mecha: %s=%s ignored: %v\n", pprofEnv, addr, err)
		}
	}
}

// servePprof serves the profile endpoint on addr for the life of the
// process (its goroutine ends with the process).
func servePprof(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", host)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /profile", func(w http.ResponseWriter, r *http.Request) {
		sec, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || sec < 1 || sec > 600 {
			http.Error(w, "seconds must be 1..600", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		select {
		case <-time.After(time.Duration(sec) * time.Second):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return nil
}

// fetchProfile waits delay, then fetches a CPU profile of length (whole
// seconds, at least 1) from a process serving servePprof at addr, into
// file.
func fetchProfile(ctx context.Context, addr, file string, delay, length time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(delay):
	}
	sec := max(1, int(length/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/profile?seconds=%d", addr, sec), nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// envValue is the last value of key in env (KEY=value entries), as exec
// uses it.
func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}
