// Package broker is the control plane's embedded message broker: NATS
// with JetStream, run in the control plane's process as a library
// (nats-server/v2), so that self-hosted Mecha has a durable pub/sub with
// no server to install. Sidecars reach it with the pubsub.jetstream
// component, like any NATS server.
//
// It listens on the loopback interface only and has no authentication:
// it is a developer's local broker, reachable by the processes of that
// machine, as Dapr's self-hosted Redis container is.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults.
const (
	// DefaultHost is the only interface the broker listens on by default.
	DefaultHost = "127.0.0.1"
	// DefaultMaxPayload is the largest message (payload and headers) the
	// broker accepts: 8 MiB, NATS's recommended ceiling, rather than its
	// default of 1 MiB, so that a 1 MiB event with its CloudEvent envelope
	// and headers fits.
	DefaultMaxPayload = 8 << 20
	// readyTimeout bounds the wait for the server to accept connections
	// when ctx has no deadline.
	readyTimeout = 10 * time.Second
)

// Options configure the broker.
type Options struct {
	// Host is the interface to listen on (default DefaultHost).
	Host string
	// Port is the client port; 0 picks a free one (see URL).
	Port int
	// StoreDir is where JetStream keeps streams and consumers, in its
	// subdirectory "jetstream" (the server's layout). Required: the
	// broker's point is durability.
	StoreDir string
	// MaxPayload defaults to DefaultMaxPayload.
	MaxPayload int32
	Logger     *slog.Logger
}

// Broker is the embedded NATS server, a control plane part.
type Broker struct {
	opts Options
	log  *slog.Logger

	mu sync.Mutex
	ns *server.Server
}

// New returns a broker that has started nothing.
func New(opts Options) *Broker {
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{opts: opts, log: log}
}

// Name is "broker".
func (b *Broker) Name() string { return "broker" }

// Start starts the server and returns once it accepts connections with
// JetStream enabled, or fails (a port in use, a store it cannot open).
func (b *Broker) Start(ctx context.Context) error {
	if b.opts.StoreDir == "" {
		return errors.New("broker: StoreDir is required")
	}
	port := b.opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	fatal := make(chan string, 1)
	ns, err := server.NewServer(&server.Options{
		ServerName: "mecha-control-plane",
		Host:       b.opts.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   b.opts.StoreDir,
		MaxPayload: b.opts.MaxPayload,
		// Signals are the control plane's to handle.
		NoSigs: true,
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	ns.SetLoggerV2(&logger{log: b.log, fatal: fatal}, false, false, false)
	ns.Start()

	deadline := time.Now().Add(readyTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		var why string
		select {
		case why = <-fatal:
		case <-ctx.Done():
			why = ctx.Err().Error()
		default:
			if time.Now().After(deadline) {
				why = "not accepting connections in time"
			}
		}
		if why != "" {
			ns.Shutdown()
			ns.WaitForShutdown()
			return fmt.Errorf("broker on %s: %s", net.JoinHostPort(b.opts.Host, strconv.Itoa(b.opts.Port)), why)
		}
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return errors.New("broker: JetStream did not start (see the log)")
	}
	b.mu.Lock()
	b.ns = ns
	b.mu.Unlock()
	b.log.Info("broker listening", "url", b.URL(), "store", filepath.Join(b.opts.StoreDir, "jetstream"), "max_payload", b.opts.MaxPayload)
	return nil
}

// URL is the client URL, nats://host:port, once started.
func (b *Broker) URL() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ns == nil {
		return ""
	}
	addr, ok := b.ns.Addr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	return "nats://" + net.JoinHostPort(b.opts.Host, strconv.Itoa(addr.Port))
}

// Healthy asks the server's own health check, JetStream included.
func (b *Broker) Healthy() error {
	b.mu.Lock()
	ns := b.ns
	b.mu.Unlock()
	if ns == nil {
		return errors.New("not started")
	}
	if st := ns.Healthz(&server.HealthzOptions{JSEnabledOnly: true}); st.Status != "ok" {
		return fmt.Errorf("%s: %s", st.Status, st.Error)
	}
	return nil
}

// Stop shuts the server down: clients are disconnected and JetStream
// writes its state out.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	ns := b.ns
	b.ns = nil
	b.mu.Unlock()
	if ns == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("broker: shutdown: %w", ctx.Err())
	}
}

// logger routes the server's log to slog. Its notices (a start-up banner of
// some 25 lines) are debug logs: Start logs the one line that matters.
// Fatalf (which the server calls when it cannot listen) is logged as an
// error and reported to Start instead of exiting the process.
type logger struct {
	log   *slog.Logger
	fatal chan string
}

func (l *logger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logger) Tracef(format string, v ...any)  {}

func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg)
	select {
	case l.fatal <- msg:
	default:
	}
}
