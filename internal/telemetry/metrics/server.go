package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Endpoint serves a Metrics registry for Prometheus on every path (daprd
// serves "/"; "/metrics" works too).
type Endpoint struct {
	srv   *http.Server
	addrs []net.Addr
	wg    sync.WaitGroup
	log   *slog.Logger
}

// Listen binds port on every host (port 0: a free port, the same one on
// every host once the first is bound) and serves m's registry until Close.
// Nothing is left listening when it fails.
func Listen(m *Metrics, hosts []string, port int, log *slog.Logger) (*Endpoint, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{log: log}
	var lns []net.Listener
	for _, host := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		port = l.Addr().(*net.TCPAddr).Port
		lns = append(lns, l)
		e.addrs = append(e.addrs, l.Addr())
	}
	if len(lns) == 0 {
		return nil, errors.New("no address to listen on")
	}
	e.srv = &http.Server{
		Handler:           m.Handler(promLogger{log}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	for _, l := range lns {
		e.wg.Go(func() {
			if err := e.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "address", l.Addr().String(), "error", err)
			}
		})
	}
	return e, nil
}

// Addr is the first address served, e.g. "127.0.0.1:9090".
func (e *Endpoint) Addr() string { return e.addrs[0].String() }

// Addrs are all the addresses served.
func (e *Endpoint) Addrs() []string {
	out := make([]string, len(e.addrs))
	for i, a := range e.addrs {
		out[i] = a.String()
	}
	return out
}

// Close stops serving, letting scrapes in progress finish within ctx.
func (e *Endpoint) Close(ctx context.Context) error {
	err := e.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, e.srv.Close())
	}
	e.wg.Wait()
	return err
}

// promLogger adapts slog to promhttp's error log.
type promLogger struct{ log *slog.Logger }

func (p promLogger) Println(v ...any) { p.log.Error("metrics endpoint: " + fmt.Sprint(v...)) }
