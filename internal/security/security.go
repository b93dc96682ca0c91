// Package security is the sidecar's side of mutual TLS: it obtains a
// workload certificate from the control plane's CA (internal/sentry, or
// Dapr's sentry: the same gRPC service) for its SPIFFE identity
// spiffe://{trustDomain}/ns/{namespace}/{appId}, renews it when 70% of its
// life has passed, and hands out TLS configurations for the internal gRPC
// server and client that always present the current certificate (a
// GetCertificate / GetClientCertificate over an atomic pointer), so a
// renewal never interrupts traffic: connections open keep going, new ones
// use the new certificate.
//
// Peers are verified against the trust bundle (the anchors given at start,
// then those the CA returns with every certificate, so a root rotation
// reaches sidecars with their next renewal) and must present a valid
// SPIFFE ID; the server side makes the caller's identity available to
// access control (PeerID), and the client side checks that the sidecar it
// reached is the app it meant to call.
package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// Defaults of Options.
const (
	DefaultControlPlaneTrustDomain = "cluster.local"
	DefaultControlPlaneNamespace   = "default"
	// DefaultRenewFraction of a certificate's remaining life passes before
	// it is renewed.
	DefaultRenewFraction = 0.7
	sentryAppID          = "dapr-sentry"
	signTimeout          = 5 * time.Second
	maxRetryWait         = 30 * time.Second
)

// Environment variables daprd reads, read here too.
const (
	TrustAnchorsEnv    = "DAPR_TRUST_ANCHORS"
	SentryTokenFileEnv = "DAPR_SENTRY_TOKEN_FILE"
)

// Options configure a Provider.
type Options struct {
	// SentryAddress is the CA's host:port.
	SentryAddress string
	AppID         string
	Namespace     string
	// TrustDomain is the app's trust domain (Configuration
	// spec.accessControl.trustDomain); empty asks for the CA's default,
	// "public".
	TrustDomain string
	// ControlPlaneTrustDomain and ControlPlaneNamespace make the CA's
	// identity, which the sidecar checks:
	// spiffe://ControlPlaneTrustDomain/ns/ControlPlaneNamespace/dapr-sentry.
	ControlPlaneTrustDomain string
	ControlPlaneNamespace   string
	// TrustAnchors are the PEM root certificates the CA's certificate is
	// verified with at first (DAPR_TRUST_ANCHORS).
	TrustAnchors []byte
	// Token, or the contents of TokenFile read at every request, proves
	// to the CA that the sidecar may ask.
	Token     string
	TokenFile string
	// RenewFraction of a certificate's remaining life passes before it is
	// renewed (default 0.7).
	RenewFraction float64
	Logger        *slog.Logger
}

// Provider holds the sidecar's current certificate and trust bundle and
// keeps them fresh.
type Provider struct {
	o      Options
	log    *slog.Logger
	cert   atomic.Pointer[svid]
	bundle atomic.Pointer[x509.CertPool]
	// sentryID is the identity the CA must present.
	sentryID spiffe.ID
	// want is the identity requested.
	want spiffe.ID
	cc   *grpc.ClientConn

	rotated atomic.Int64
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// svid is a certificate with its key and identity.
type svid struct {
	tls  *tls.Certificate
	leaf *x509.Certificate
	id   spiffe.ID
}

// Start obtains the first certificate, trying until ctx ends, and starts
// renewing it in the background until Close.
func Start(ctx context.Context, o Options) (*Provider, error) {
	if o.SentryAddress == "" {
		return nil, errors.New("mTLS needs the CA's address (--sentry-address)")
	}
	if o.ControlPlaneTrustDomain == "" {
		o.ControlPlaneTrustDomain = DefaultControlPlaneTrustDomain
	}
	if o.ControlPlaneNamespace == "" {
		o.ControlPlaneNamespace = DefaultControlPlaneNamespace
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		o.RenewFraction = DefaultRenewFraction
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{o: o, log: o.Logger, done: make(chan struct{})}
	var err error
	if p.sentryID, err = spiffe.New(o.ControlPlaneTrustDomain, o.ControlPlaneNamespace, sentryAppID); err != nil {
		return nil, fmt.Errorf("the CA's identity: %w", err)
	}
	td := o.TrustDomain
	if td == "" {
		td = spiffe.DefaultTrustDomain
	}
	if p.want, err = spiffe.New(td, o.Namespace, o.AppID); err != nil {
		return nil, fmt.Errorf("this sidecar's identity: %w", err)
	}
	if len(o.TrustAnchors) == 0 {
		return nil, errors.New("mTLS needs the trust anchors to verify the CA with (" + TrustAnchorsEnv + " or --trust-anchors-file)")
	}
	pool, n := certPool(o.TrustAnchors)
	if n == 0 {
		return nil, errors.New("the trust anchors hold no PEM certificate")
	}
	p.bundle.Store(pool)
	p.cc, err = grpc.NewClient(o.SentryAddress, grpc.WithTransportCredentials(credentials.NewTLS(p.tlsConfig(false, p.isSentry))))
	if err != nil {
		return nil, fmt.Errorf("the CA at %s: %w", o.SentryAddress, err)
	}
	if err := p.first(ctx); err != nil {
		p.cc.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	go p.renewLoop(rctx)
	return p, nil
}

// first obtains the first certificate, retrying with back-off until ctx
// ends (the CA may be starting too).
func (p *Provider) first(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for {
		err := p.renew(ctx)
		if err == nil {
			return nil
		}
		p.log.Warn("could not obtain a workload certificate yet", "sentry", p.o.SentryAddress, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("obtaining a workload certificate from %s: %w", p.o.SentryAddress, err)
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Close stops the renewals.
func (p *Provider) Close() error {
	p.once.Do(func() {
		if p.cancel != nil {
			p.cancel()
			<-p.done
		}
		p.cc.Close()
	})
	return nil
}

// renewLoop renews the certificate when RenewFraction of its remaining
// life has passed, retrying failures with back-off.
func (p *Provider) renewLoop(ctx context.Context) {
	defer close(p.done)
	retry := time.Second
	next := p.renewAt()
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := p.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			exp := p.cert.Load().leaf.NotAfter
			level := slog.LevelWarn
			if time.Now().After(exp) {
				level = slog.LevelError
			}
			p.log.Log(ctx, level, "renewing the workload certificate failed; retrying", "error", err, "expires", exp.UTC().Format(time.RFC3339), "retryIn", retry.String())
			next = time.Now().Add(retry)
			retry = min(retry*2, maxRetryWait)
			continue
		}
		retry = time.Second
		p.rotated.Add(1)
		next = p.renewAt()
	}
}

// renewAt is when the current certificate is to be renewed.
func (p *Provider) renewAt() time.Time {
	s := p.cert.Load()
	now := time.Now()
	left := s.leaf.NotAfter.Sub(now)
	return now.Add(time.Duration(float64(left) * p.o.RenewFraction))
}

// renew asks the CA for a certificate for a new key and installs it.
func (p *Provider) renew(ctx context.Context) error {
	token, err := p.token()
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return err
	}
	req := &sentryv1.SignCertificateRequest{
		Id:                        p.o.AppID,
		Token:                     token,
		TrustDomain:               p.o.TrustDomain,
		Namespace:                 p.o.Namespace,
		CertificateSigningRequest: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
		TokenValidator:            sentryv1.SignCertificateRequest_INSECURE,
	}
	if p.o.TokenFile != "" {
		// As daprd does with a token file.
		req.TokenValidator = sentryv1.SignCertificateRequest_JWKS
	}
	sctx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	resp, err := sentryv1.NewCAClient(p.cc).SignCertificate(sctx, req)
	if err != nil {
		return fmt.Errorf("the CA refused: %w", err)
	}
	chain, err := parseCertificates(resp.GetWorkloadCertificate())
	if err != nil {
		return fmt.Errorf("the CA's certificate: %w", err)
	}
	var bundlePEM []byte
	for _, b := range resp.GetTrustChainCertificates() {
		bundlePEM = append(append(bundlePEM, b...), '\n')
	}
	bundle, n := certPool(bundlePEM)
	if n == 0 {
		// An old CA that sends no bundle: keep the one we have.
		bundle = p.bundle.Load()
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bundle, Intermediates: poolOf(chain[1:]), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the issued certificate does not verify against the trust bundle: %w", err)
	}
	id, err := spiffe.FromCertificate(leaf)
	if err != nil {
		return fmt.Errorf("the issued certificate: %w", err)
	}
	if id.Namespace != p.want.Namespace || id.AppID != p.want.AppID {
		return fmt.Errorf("the CA issued %s, not an identity for %s", id, p.want)
	}
	if !publicKeyEqual(leaf, key) {
		return errors.New("the issued certificate is not for the key this sidecar sent")
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	p.bundle.Store(bundle)
	prev := p.cert.Swap(&svid{tls: c, leaf: leaf, id: id})
	if prev == nil {
		p.log.Info("mTLS workload certificate obtained", "spiffe_id", id.String(), "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
	} else {
		p.log.Debug("mTLS workload certificate renewed", "spiffe_id", id.String(), "expires", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func publicKeyEqual(leaf *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(key.Public())
}

func (p *Provider) token() (string, error) {
	if p.o.TokenFile == "" {
		return p.o.Token, nil
	}
	data, err := os.ReadFile(p.o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("reading the sentry token: %w", err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("the sentry token file %s is empty", p.o.TokenFile)
	}
	return t, nil
}

// ID is this sidecar's identity.
func (p *Provider) ID() spiffe.ID { return p.cert.Load().id }

// Certificate is the current workload certificate.
func (p *Provider) Certificate() *x509.Certificate { return p.cert.Load().leaf }

// Rotations counts the renewals since Start.
func (p *Provider) Rotations() int64 { return p.rotated.Load() }

// TrustBundle is the current trust bundle.
func (p *Provider) TrustBundle() *x509.CertPool { return p.bundle.Load() }

// isSentry accepts only the CA's identity.
func (p *Provider) isSentry(id spiffe.ID) error {
	if id != p.sentryID {
		return fmt.Errorf("the CA presented %s, want %s", id, p.sentryID)
	}
	return nil
}

// ServerConfig is the TLS configuration of the internal gRPC server:
// clients must present a certificate that chains to the trust bundle and
// carries a SPIFFE ID.
func (p *Provider) ServerConfig() *tls.Config {
	return p.tlsConfig(true, nil)
}

// ClientConfig is the TLS configuration for calls to other sidecars: the
// server must present a certificate that chains to the trust bundle and
// carries a SPIFFE ID (which app it must be is checked per call, see
// DialOption).
func (p *Provider) ClientConfig() *tls.Config {
	return p.tlsConfig(false, nil)
}

// tlsConfig builds a configuration that presents the current certificate
// and verifies the peer in VerifyConnection, which also runs on resumed
// sessions. Host names play no part: identities are SPIFFE IDs, so the
// standard host name check is replaced by this one.
func (p *Provider) tlsConfig(server bool, accept func(spiffe.ID) error) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := p.verify(cs.PeerCertificates, server)
			if err != nil {
				return err
			}
			if accept != nil {
				return accept(id)
			}
			return nil
		},
	}
	if server {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.cert.Load().tls, nil }
		// Every connection makes a full handshake with a fresh check.
		cfg.SessionTicketsDisabled = true
		return cfg
	}
	//nolint:gosec // the chain and identity are checked in VerifyConnection
	cfg.InsecureSkipVerify = true
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if s := p.cert.Load(); s != nil {
			return s.tls, nil
		}
		// Before the first certificate (talking to the CA): none.
		return &tls.Certificate{}, nil
	}
	return cfg
}

// verify checks a peer's chain against the trust bundle, now, and
// returns its SPIFFE ID.
func (p *Provider) verify(certs []*x509.Certificate, peerIsClient bool) (spiffe.ID, error) {
	if len(certs) == 0 {
		return spiffe.ID{}, errors.New("the peer presented no certificate")
	}
	usage := x509.ExtKeyUsageServerAuth
	if peerIsClient {
		usage = x509.ExtKeyUsageClientAuth
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         p.bundle.Load(),
		Intermediates: poolOf(certs[1:]),
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}); err != nil {
		return spiffe.ID{}, fmt.Errorf("the peer's certificate: %w", err)
	}
	id, err := spiffe.FromCertificate(certs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("the peer's certificate: %w", err)
	}
	return id, nil
}

// PlacementAppID is the app id in the placement service's identity,
// Dapr's.
const PlacementAppID = "dapr-placement"

// PlacementID is the identity the placement service must present:
// spiffe://{controlPlaneTrustDomain}/ns/{controlPlaneNamespace}/dapr-placement,
// in the CA's trust domain and namespace.
func (p *Provider) PlacementID() spiffe.ID {
	return spiffe.ID{TrustDomain: p.sentryID.TrustDomain, Namespace: p.sentryID.Namespace, AppID: PlacementAppID}
}

// PlacementDialOptions make the placement client use mutual TLS: it
// presents the current workload certificate and accepts only a server
// whose certificate chains to the trust bundle and names PlacementID.
func (p *Provider) PlacementDialOptions() []grpc.DialOption {
	want := p.PlacementID()
	cfg := p.tlsConfig(false, func(id spiffe.ID) error {
		if id != want {
			return fmt.Errorf("the placement presented %s, want %s", id, want)
		}
		return nil
	})
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}
}

// ServerOption makes a gRPC server use ServerConfig.
func (p *Provider) ServerOption() grpc.ServerOption {
	return grpc.Creds(credentials.NewTLS(p.ServerConfig()))
}

// DialOptions make a gRPC client use ClientConfig and check, per call,
// that the server is the app the call is for (see checkCallee).
func (p *Provider) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(p.ClientConfig())),
		grpc.WithChainStreamInterceptor(checkCallee),
	}
}

func certPool(pemData []byte) (*x509.CertPool, int) {
	pool := x509.NewCertPool()
	certs, err := parseCertificates(pemData)
	if err != nil {
		return pool, 0
	}
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, len(certs)
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}
