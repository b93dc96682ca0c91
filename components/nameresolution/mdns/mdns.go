// Package mdns is nameresolution.mdns, daprd's self-hosted default, for
// setups that want discovery without a shared file: each sidecar announces
// itself with multicast DNS and finds the others by asking the network.
//
// As in Dapr, the service type is the app id, in domain "local." (so a
// query for "orders.local." finds every sidecar of app orders), the
// instance name is unique per sidecar (its instance id), the port is the
// internal gRPC port and the TXT record carries the app id; Mecha adds
// "namespace=<ns>" to it and Resolve keeps the instances of the requested
// namespace (those without one, as daprd announces them, match any).
// Resolve answers from a cache when it can; on a miss it browses, returning
// as soon as the first instances answered (the browse goes on in the
// background for browseTimeout and adds the late ones to the cache).
// Cached addresses live addressTTL after they were last seen, and the apps
// asked for recently are browsed again every refreshInterval. Resolve
// returns every address: the caller balances over them.
//
// Responders here are hashicorp/mdns servers, one per announcement. Queries
// are Mecha's own (on miekg/dns, which hashicorp/mdns builds on): they ask
// for unicast answers, so a browse joins no multicast group and sends
// nothing but its question, on the chosen interface only. That interface is
// the loopback one unless metadata names another, because Mecha sidecars
// announce 127.0.0.1 addresses, meaningful on this host only. On Linux,
// multicast works on "lo" although the interface does not carry the
// MULTICAST flag; IPv6 multicast does not, so mDNS runs over IPv4 (announced
// addresses may still be IPv6).
//
// There is no goodbye: a closed or killed sidecar stops answering and
// drops out of the others' caches after addressTTL (the invocation block
// moves on to another instance meanwhile), while goodbyes from other
// responders (TTL 0) are honoured.
//
// Metadata (spec.nameResolution.configuration, case-insensitive; Dapr's
// resolver has none of these knobs, its values are the defaults):
//
//	interface        network interface for mDNS, default the loopback one
//	browseTimeout    how long a browse listens for answers, default 1s
//	addressTTL       how long an address stays cached after it was seen, default 60s
//	refreshInterval  how often cached apps are browsed again, default 30s
package mdns

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/mdns"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
)

// Resolver announces and finds sidecars with multicast DNS.
type Resolver struct {
	log *slog.Logger
	now func() time.Time

	cfg   config
	iface *net.Interface
	src   net.IP // source address of queries

	// run is cancelled by Close; it ends browses and the refresher, which
	// wg waits for.
	run    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// annMu orders Register, Deregister and Close.
	annMu    sync.Mutex
	server   *mdns.Server // nil when not announcing
	announce string       // the announced instance's DNS name

	mu     sync.Mutex
	inited bool
	closed bool
	apps   map[string]*app // by app id
}

var (
	_ nameresolution.Resolver     = (*Resolver)(nil)
	_ nameresolution.Deregisterer = (*Resolver)(nil)
)

// New returns an uninitialised resolver.
func New(d components.Deps) *Resolver {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{log: log, now: time.Now, apps: map[string]*app{}}
}

// Init reads the configuration, checks that multicast can be sent on the
// interface and starts the background refresh.
func (r *Resolver) Init(_ context.Context, md components.Metadata) error {
	cfg, err := parseConfig(md)
	if err != nil {
		return err
	}
	ifi, err := pickInterface(cfg.Interface)
	if err != nil {
		return err
	}
	src := ipv4Of(ifi)
	if src == nil {
		return fmt.Errorf("mdns: interface %s has no IPv4 address", ifi.Name)
	}
	// Fail now, not on the first call, if multicast cannot be sent there.
	q, err := newQuerier(ifi, src, "probe.local.")
	if err != nil {
		return err
	}
	q.close()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("mdns: Init after Close")
	}
	if r.inited {
		return errors.New("mdns: already initialised")
	}
	r.cfg, r.iface, r.src, r.inited = cfg, ifi, src, true
	r.run, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.refresher()
	r.log.Debug("mdns name resolution ready", "interface", ifi.Name, "browseTimeout", cfg.BrowseTimeout,
		"addressTTL", cfg.AddressTTL, "refreshInterval", cfg.RefreshInterval)
	return nil
}

// Register announces the sidecar, replacing an earlier announcement.
func (r *Resolver) Register(_ context.Context, self nameresolution.Instance) error {
	svc, err := r.service(self)
	if err != nil {
		return err
	}
	r.annMu.Lock()
	defer r.annMu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	// Stop the old responder first: two answering for one instance name
	// with different addresses would keep the stale one alive.
	r.stopAnnouncing()
	srv, err := mdns.NewServer(&mdns.Config{Zone: svc, Iface: r.iface, Logger: slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)})
	if err != nil {
		return fmt.Errorf("mdns: announce %s on %s: %w", self.AppID, r.iface.Name, err)
	}
	r.server = srv
	r.announce = instanceName(svc)
	if ip := svc.IPs[0]; ip.IsLoopback() && r.iface.Flags&net.FlagLoopback == 0 {
		r.log.Warn("announcing a loopback address on a network interface: other hosts cannot reach it", "address", self.Address, "interface", r.iface.Name)
	}
	r.log.Info("announced on mDNS", "app_id", self.AppID, "address", self.Address, "instance", self.InstanceID, "interface", r.iface.Name)
	return nil
}

// Deregister stops announcing; the resolver still resolves.
func (r *Resolver) Deregister(context.Context) error {
	r.annMu.Lock()
	defer r.annMu.Unlock()
	r.stopAnnouncing()
	return nil
}

// abandon stops answering as a killed sidecar would, leaving the caches
// (its own included) as they are (tests).
func (r *Resolver) abandon() {
	r.annMu.Lock()
	defer r.annMu.Unlock()
	if r.server != nil {
		r.server.Shutdown()
		r.server = nil
	}
}

// stopAnnouncing shuts the responder down and forgets the own instance in
// the own cache. Called with annMu held.
func (r *Resolver) stopAnnouncing() {
	if r.server == nil {
		return
	}
	if err := r.server.Shutdown(); err != nil {
		r.log.Warn("stopping the mDNS responder", "error", err)
	}
	r.server = nil
	r.forget(r.announce)
	r.announce = ""
}

// Close stops announcing, ends the browses and the refresher and waits for
// them. It is idempotent and safe before Init.
func (r *Resolver) Close() error {
	r.annMu.Lock()
	r.mu.Lock()
	r.closed = true
	cancel := r.cancel
	r.mu.Unlock()
	r.stopAnnouncing()
	r.annMu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
	return nil
}

func (r *Resolver) usable() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.usableLocked()
}

// service builds the announcement of a sidecar.
func (r *Resolver) service(self nameresolution.Instance) (*mdns.MDNSService, error) {
	if !validLabel(self.AppID) {
		return nil, fmt.Errorf("mdns: app id %q cannot be an mDNS service name (one DNS label: no dots, at most 63 bytes)", self.AppID)
	}
	if self.InstanceID == "" {
		return nil, errors.New("mdns: the instance has no id")
	}
	h, p, err := net.SplitHostPort(self.Address)
	if err != nil {
		return nil, fmt.Errorf("mdns: address %q: %w", self.Address, err)
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return nil, fmt.Errorf("mdns: address %q: mDNS announces an IP address, not a host name", self.Address)
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("mdns: address %q has no usable port", self.Address)
	}
	label := instanceLabel(self.InstanceID)
	ns := self.Namespace
	if ns == "" {
		ns = "default"
	}
	svc, err := mdns.NewMDNSService(label, self.AppID, "local.", label+".local.", port, []net.IP{ip}, txt(self.AppID, ns))
	if err != nil {
		return nil, fmt.Errorf("mdns: %w", err)
	}
	return svc, nil
}

// instanceLabel makes the instance id one DNS label; a long one keeps a
// hash of the rest, to stay unique.
func instanceLabel(id string) string {
	b := []byte(id)
	for i, c := range b {
		if c <= ' ' || c == '.' || c == '\\' || c == 0x7f {
			b[i] = '-'
		}
	}
	if len(b) > 63 {
		h := fnv.New32a()
		h.Write([]byte(id))
		b = fmt.Appendf(b[:54], "-%08x", h.Sum32())
	}
	return string(b)
}

func instanceName(s *mdns.MDNSService) string {
	return lower(s.Instance + "." + s.Service + ".local.")
}
