package runtime

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/mecha-dev/mecha/internal/blocks/actors"
	"github.com/mecha-dev/mecha/internal/blocks/metadata"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/placement/ring"
	"github.com/mecha-dev/mecha/internal/telemetry/metrics"
)

// initActors creates the actor runtime: enabled by a placement
// (--placement-host-address, or Options.ActorPlacement in tests), hosting
// actors for an HTTP app. It starts later (startActors), once the internal
// server listens and the components are loaded.
func (r *Runtime) initActors() {
	o := actors.Options{
		AppID: r.opts.AppID,
		App:   actors.HTTPApp(r.app), Remote: r.invokeClient,
		Placement: r.actorPlacement(), MaxBodySize: r.opts.MaxBodySize,
		Resiliency: r.resiliency,
		Logger:     r.log.With(slog.String("scope", "mecha.runtime.actors")),
	}
	if r.mx.m != nil {
		o.Metrics = r.mx.m
	}
	if r.opts.ActorTuning != nil {
		r.opts.ActorTuning(&o)
	}
	if r.app != nil && r.app.HTTP == nil && o.Placement != nil {
		r.log.Info("the app speaks gRPC: it can call actors but hosts none (Dapr's AppCallback has no actor methods)")
	}
	r.actors = actors.New(o)
	if o.Placement != nil {
		r.mx.m.ObserveActors(func() map[string]metrics.ActorGauge {
			out := map[string]metrics.ActorGauge{}
			for typ, g := range r.actors.Gauges() {
				out[typ] = metrics.ActorGauge(g)
			}
			return out
		})
	}
	r.meta.SetActorRuntime(func() metadata.ActorRuntime {
		s := r.actors.Status()
		out := metadata.ActorRuntime{Status: s.RuntimeStatus, HostReady: s.HostReady, Placement: s.Placement, TableVersion: s.TableVersion}
		for _, c := range s.ActiveActors {
			out.ActiveActors = append(out.ActiveActors, metadata.ActorCount{Type: c.Type, Count: c.Count})
		}
		return out
	})
}

// startActors starts the actor runtime under the address other sidecars
// reach this one on: DAPR_HOST_IP (as daprd) with the internal port, or
// the loopback address of self-hosted mode.
func (r *Runtime) startActors() {
	addr := r.InternalAddr()
	if ip := os.Getenv("DAPR_HOST_IP"); ip != "" {
		addr = net.JoinHostPort(ip, strconv.Itoa(r.internalPort))
	}
	r.actors.Start(addr)
}

// actorPlacement returns the placement the actor runtime uses: the test
// double, the placement client, or nil (actors disabled, as daprd without
// --placement-host-address).
func (r *Runtime) actorPlacement() actors.NewPlacement {
	if r.opts.ActorPlacement != nil {
		return r.opts.ActorPlacement
	}
	if len(r.opts.PlacementAddresses) == 0 {
		return nil
	}
	return func(addr string, h actors.Hooks) (actors.Placement, error) {
		p := &placementClient{hooks: h}
		c, err := client.New(client.Options{
			Addresses: r.opts.PlacementAddresses,
			Name:      addr,
			AppID:     r.opts.AppID,
			Namespace: r.opts.Namespace,
			Handler:   p,
			Logger:    r.log.With(slog.String("scope", "mecha.runtime.placement")),
			// With mTLS, the placement stream uses the workload
			// certificate too (security.go).
			DialOptions: r.placementDialOptions(),
		})
		if err != nil {
			return nil, err
		}
		p.c = c
		return p, nil
	}
}

// placementClient adapts the placement client to the actor runtime: it
// keeps the tables the client hands over and forwards the round's phases.
type placementClient struct {
	c      *client.Client
	hooks  actors.Hooks
	tables atomic.Pointer[ring.Tables]
}

var (
	_ actors.Placement = (*placementClient)(nil)
	_ client.Handler   = (*placementClient)(nil)
)

func (p *placementClient) Lookup(actorType, actorID string) (string, bool) {
	t := p.tables.Load()
	if t == nil {
		return "", false
	}
	return t.Lookup(actorType, actorID)
}

func (p *placementClient) Version() uint64 { return p.c.Version() }

func (p *placementClient) Connected() bool { return p.c.Address() != "" }

// Run reports the actor types and follows the tables until ctx ends.
func (p *placementClient) Run(ctx context.Context, actorTypes []string) error {
	p.c.SetEntities(actorTypes)
	p.c.Start()
	<-ctx.Done()
	return p.c.Close()
}

func (p *placementClient) OnLock(uint64) { p.hooks.OnLock() }

func (p *placementClient) OnUpdate(t *ring.Tables, v uint64) {
	p.tables.Store(t)
	p.hooks.OnUpdate(v)
}

func (p *placementClient) OnUnlock(uint64) { p.hooks.OnUnlock() }

// closeActors deactivates the active actors (the app is told) and stops
// the runtime, bounded by ctx.
func (r *Runtime) closeActors(ctx context.Context) {
	if r.actors != nil {
		_ = r.actors.Close(ctx)
	}
}
