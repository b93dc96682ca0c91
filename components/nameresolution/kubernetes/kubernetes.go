// Package kubernetes is nameresolution.kubernetes, the resolver of cluster
// mode: it keeps no registry and asks nothing of the cluster (no client-go,
// no API server), because Kubernetes already names every sidecar. The Dapr
// operator (or Mecha's) creates a headless Service "<app-id>-dapr" per app
// whose "dapr-internal" port is 50002, the internal gRPC port sidecars
// listen on in a pod, so an app id resolves to
//
//	{appID}-dapr.{namespace}.svc.{clusterDomain}:50002
//
// and the cluster's DNS turns that name into the pods' addresses when the
// gRPC client dials it (passthrough target, system resolver). Register
// announces nothing; it only remembers the sidecar's namespace, used when a
// request names none.
//
// Metadata (spec.nameResolution.configuration, as daprd's):
//
//	clusterDomain  the cluster's DNS domain, default "cluster.local"
//	template       a Go text/template producing "host:port" instead, over
//	               {{.ID}}, {{.Namespace}}, {{.Port}} (50002) and {{.Data.<key>}},
//	               e.g. "{{.ID}}-dapr.{{.Namespace}}.svc.example.org:{{.Port}}";
//	               mutually exclusive with clusterDomain
//
// Both are checked at Init: a template that does not parse, names a field
// that does not exist or does not render a host:port fails there, not on
// the first call. {{.Data.<key>}} reads the request's data, which neither
// daprd nor Mecha fills in today (daprd renders it as "<no value>"), so a
// template using it is rejected at Init with that explanation rather than
// producing names that cannot resolve.
package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
)

// InternalPort is the port of daprd's internal gRPC server in a pod (the
// "dapr-internal" port of the "<app-id>-dapr" Service).
const InternalPort = 50002

// Resolver formats Kubernetes service names.
type Resolver struct {
	log *slog.Logger

	mu        sync.RWMutex
	cfg       config
	namespace string // the sidecar's, from Register
	inited    bool
}

var _ nameresolution.Resolver = (*Resolver)(nil)

// New returns an uninitialised resolver.
func New(d components.Deps) *Resolver {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{log: log}
}

// Init reads and checks the configuration; it does no I/O.
func (r *Resolver) Init(_ context.Context, md components.Metadata) error {
	cfg, err := parseConfig(md)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cfg, r.inited = cfg, true
	r.mu.Unlock()
	if cfg.tmpl != nil {
		r.log.Debug("kubernetes name resolution ready", "template", cfg.Template)
	} else {
		r.log.Debug("kubernetes name resolution ready", "clusterDomain", cfg.ClusterDomain)
	}
	return nil
}

// Register announces nothing (the cluster's DNS knows every sidecar); it
// records the sidecar's namespace, the default for requests without one.
func (r *Resolver) Register(_ context.Context, self nameresolution.Instance) error {
	r.mu.Lock()
	r.namespace = self.Namespace
	r.mu.Unlock()
	return nil
}

// Resolve returns the one DNS address of the app's sidecars; the cluster's
// DNS and the gRPC dialer spread calls over its pods.
func (r *Resolver) Resolve(_ context.Context, req nameresolution.ResolveRequest) ([]string, error) {
	if req.ID == "" {
		return nil, errors.New("kubernetes name resolution: empty app id")
	}
	r.mu.RLock()
	cfg, ns, inited := r.cfg, r.namespace, r.inited
	r.mu.RUnlock()
	if !inited {
		return nil, errors.New("kubernetes name resolution: not initialised")
	}
	if req.Namespace != "" {
		ns = req.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	addr, err := cfg.address(request{ID: req.ID, Namespace: ns, Port: InternalPort})
	if err != nil {
		return nil, fmt.Errorf("kubernetes name resolution of %q in namespace %q: %w", req.ID, ns, err)
	}
	return []string{addr}, nil
}

// Close has nothing to release.
func (r *Resolver) Close() error { return nil }

// request is what a template sees, with the field names of Dapr's
// nameresolution.ResolveRequest so that daprd templates work unchanged.
type request struct {
	ID        string
	Namespace string
	Port      int
	Data      map[string]string
}

// address renders the request with the template, or in the default form.
func (c config) address(req request) (string, error) {
	if c.tmpl == nil {
		if !validLabel(req.ID + "-dapr") {
			return "", fmt.Errorf("app id %q cannot name a Kubernetes service (letters, digits and inner hyphens, at most 58 characters)", req.ID)
		}
		if !validLabel(req.Namespace) {
			return "", fmt.Errorf("namespace %q is not a DNS label", req.Namespace)
		}
		return net.JoinHostPort(req.ID+"-dapr."+req.Namespace+".svc."+c.ClusterDomain, strconv.Itoa(req.Port)), nil
	}
	var b bytes.Buffer
	if err := c.tmpl.Execute(&b, req); err != nil {
		return "", fmt.Errorf("template: %w", err)
	}
	if _, _, err := net.SplitHostPort(b.String()); err != nil {
		return "", fmt.Errorf("template rendered %q, not host:port: %w", b.String(), err)
	}
	return b.String(), nil
}
