package runtime

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/mecha-dev/mecha/internal/accesscontrol"
	"github.com/mecha-dev/mecha/internal/security"
)

// SecurityOptions configure mutual TLS between sidecars, with workload
// certificates from the control plane's CA (internal/security).
type SecurityOptions struct {
	// SentryAddress is the CA (--sentry-address); empty falls back to
	// Configuration spec.mtls.sentryAddress.
	SentryAddress string
	// EnableMTLS, when set (--enable-mtls given), decides; else
	// spec.mtls.enabled does; else mTLS is on exactly when a CA address
	// is known.
	EnableMTLS *bool
	// TrustAnchors are the PEM roots the CA is verified with.
	TrustAnchors []byte
	// SentryToken, or the file holding it (read at every renewal), is
	// presented to the CA.
	SentryToken     string
	SentryTokenFile string
	// ControlPlaneTrustDomain and ControlPlaneNamespace name the CA's
	// identity (default cluster.local and default); empty falls back to
	// spec.mtls.controlPlaneTrustDomain.
	ControlPlaneTrustDomain string
	ControlPlaneNamespace   string
	// InitTimeout bounds obtaining the first certificate (default 30s).
	InitTimeout time.Duration
}

// DefaultSecurityInitTimeout bounds the wait for the first certificate.
const DefaultSecurityInitTimeout = 30 * time.Second

// initSecurity parses the access control list and, with mTLS on, obtains
// the first workload certificate; the sidecar does not start without one.
func (r *Runtime) initSecurity(ctx context.Context) error {
	acl, err := accesscontrol.New(r.cfg.Spec.AccessControl, appIsHTTP(r.opts.AppProtocol))
	if err != nil {
		return err
	}
	r.acl = acl
	so := r.opts.Security
	spec := r.cfg.Spec.MTLS
	addr := so.SentryAddress
	if addr == "" && spec != nil {
		addr = spec.SentryAddress
	}
	on := addr != ""
	if spec != nil && spec.Enabled != nil {
		on = *spec.Enabled
	}
	if so.EnableMTLS != nil {
		on = *so.EnableMTLS
	}
	if !on {
		if acl != nil && len(r.cfg.Spec.AccessControl.Policies) > 0 {
			r.log.Warn("access control policies need mTLS to identify callers; without it only the default action applies", "defaultAction", r.cfg.Spec.AccessControl.DefaultAction)
		}
		return nil
	}
	if addr == "" {
		return errors.New("mTLS is enabled but no CA address is given (--sentry-address or spec.mtls.sentryAddress)")
	}
	cptd := so.ControlPlaneTrustDomain
	if cptd == "" && spec != nil {
		cptd = spec.ControlPlaneTrustDomain
	}
	td := ""
	if acl != nil {
		td = acl.TrustDomain()
	}
	timeout := so.InitTimeout
	if timeout <= 0 {
		timeout = DefaultSecurityInitTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p, err := security.Start(sctx, security.Options{
		SentryAddress: addr, AppID: r.opts.AppID, Namespace: r.opts.Namespace, TrustDomain: td,
		ControlPlaneTrustDomain: cptd, ControlPlaneNamespace: so.ControlPlaneNamespace,
		TrustAnchors: so.TrustAnchors, Token: so.SentryToken, TokenFile: so.SentryTokenFile,
		Logger: r.log.With(slog.String("scope", "mecha.runtime.security")),
	})
	if err != nil {
		return err
	}
	r.sec = p
	r.log.Info("mTLS enabled", "spiffe_id", p.ID().String(), "sentry", addr)
	return nil
}

// appIsHTTP reports whether the app protocol is one of HTTP's, for access
// control (HTTP verbs, case-insensitive paths).
func appIsHTTP(protocol string) bool {
	switch protocol {
	case "", "http", "https", "h2c":
		return true
	}
	return false
}

// internalServerSecurity are the internal server's options for mTLS and
// the access-control guard; none when neither is configured.
func (r *Runtime) internalServerSecurity() []grpc.ServerOption {
	if r.sec == nil && r.acl == nil {
		return nil
	}
	g := &accesscontrol.Guard{ACL: r.acl, Logger: r.log}
	var opts []grpc.ServerOption
	if r.sec != nil {
		g.Identify = security.PeerID
		opts = append(opts, r.sec.ServerOption())
	}
	return append(opts,
		grpc.ChainUnaryInterceptor(g.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamServerInterceptor()))
}

// internalClientSecurity are the dial options of the sidecar-to-sidecar
// client with mTLS.
func (r *Runtime) internalClientSecurity() []grpc.DialOption {
	if r.sec == nil {
		return nil
	}
	return r.sec.DialOptions()
}

// placementDialOptions are the placement client's dial options: mutual
// TLS with the workload certificate, checking the placement's identity,
// when mTLS is on; none (plaintext) otherwise.
func (r *Runtime) placementDialOptions() []grpc.DialOption {
	if r.sec == nil {
		return nil
	}
	return r.sec.PlacementDialOptions()
}

// Security is the mTLS provider, nil when mTLS is off (tests).
func (r *Runtime) Security() *security.Provider { return r.sec }

func (r *Runtime) closeSecurity() error {
	if r.sec == nil {
		return nil
	}
	return r.sec.Close()
}
