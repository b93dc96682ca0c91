// Package sentry is the certificate authority of Mecha's control plane,
// the counterpart of Dapr's sentry: it keeps a root and an issuer
// certificate and signs short-lived workload certificates for sidecars,
// over Dapr's own gRPC service (dapr.proto.sentry.v1.CA/SignCertificate),
// so that a daprd can use it too.
//
// A sidecar proves who may ask with a shared token: a file the CA writes
// once (<dir>/token, 0600) and sidecars on the same host read. The
// certificate's identity is the SPIFFE ID spiffe://{trustDomain}/ns/
// {namespace}/{appId} of the request, so every holder of the token can
// obtain any app's identity: the token guards the CA from other users of
// the host, not apps from each other.
//
// In a cluster (Options.Kubernetes), a sidecar may instead prove its
// identity with its pod's service-account token (Dapr's KUBERNETES
// validator): the API server reviews the token, and the identity is that
// of the pod it was issued for (kubernetes.go), so one app cannot obtain
// another's.
//
// The material lives in a directory with Dapr's file names (ca.crt,
// issuer.crt, issuer.key): generated on first start and loaded on the
// next, so a restart keeps the trust root; or supplied as files.
package sentry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// Defaults of Options.
const (
	// DefaultPort is the CA's port in self-hosted mode.
	DefaultPort = 50003
	// DefaultTrustDomain is the control plane's trust domain, that of
	// Dapr's Helm chart.
	DefaultTrustDomain = "cluster.local"
	// DefaultNamespace is the control plane's namespace.
	DefaultNamespace = "default"
	// DefaultWorkloadCertTTL and DefaultAllowedClockSkew are Dapr's.
	DefaultWorkloadCertTTL  = 24 * time.Hour
	DefaultAllowedClockSkew = 15 * time.Minute
	// ServerAppID is the app id in the CA's own certificate, Dapr's, which
	// sidecars check: spiffe://{trustDomain}/ns/{namespace}/dapr-sentry.
	ServerAppID = "dapr-sentry"
	// maxAppIDLength is Dapr's limit.
	maxAppIDLength = 64
)

// Options configure a Server.
type Options struct {
	// Dir keeps the generated material and the token. It may be empty
	// only when the three files below are given (the token file is then
	// TokenFile, which must exist).
	Dir string
	// RootCertFile, IssuerCertFile and IssuerKeyFile, all or none, are
	// supplied material to load instead of Dir's.
	RootCertFile, IssuerCertFile, IssuerKeyFile string
	// TokenFile is where the token is (default Dir/token); it is created
	// when missing.
	TokenFile string

	// TrustDomain and Namespace are the control plane's: the CA's own
	// identity is spiffe://TrustDomain/ns/Namespace/dapr-sentry, and the
	// CA issues no workload certificate in TrustDomain.
	TrustDomain string
	Namespace   string
	// WorkloadCertTTL is the lifetime of issued certificates.
	WorkloadCertTTL time.Duration
	// AllowedClockSkew backdates issued certificates; negative: none.
	AllowedClockSkew time.Duration

	// Address is where the gRPC service listens (e.g. "127.0.0.1:50003");
	// Listener, when set, is used instead.
	Address  string
	Listener net.Listener

	// Kubernetes, when set, enables the KUBERNETES validator (Dapr's
	// cluster-mode identity proof, kubernetes.go); without it such
	// requests are refused as a validator that is not enabled.
	Kubernetes *KubernetesOptions

	Logger *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.WorkloadCertTTL <= 0 {
		o.WorkloadCertTTL = DefaultWorkloadCertTTL
	}
	if o.AllowedClockSkew == 0 {
		o.AllowedClockSkew = DefaultAllowedClockSkew
	} else if o.AllowedClockSkew < 0 {
		o.AllowedClockSkew = 0
	}
	if o.TokenFile == "" && o.Dir != "" {
		o.TokenFile = filepath.Join(o.Dir, TokenFile)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

func (o *Options) validate() error {
	supplied := 0
	for _, f := range []string{o.RootCertFile, o.IssuerCertFile, o.IssuerKeyFile} {
		if f != "" {
			supplied++
		}
	}
	if supplied != 0 && supplied != 3 {
		return errors.New("give the root certificate, the issuer certificate and the issuer key together (--ca-root-cert, --ca-issuer-cert, --ca-issuer-key)")
	}
	if o.Dir == "" && (supplied == 0 || o.TokenFile == "") {
		return errors.New("no CA directory for the generated material or the token (--ca-dir)")
	}
	if err := spiffe.ValidTrustDomain(o.TrustDomain); err != nil {
		return fmt.Errorf("control plane trust domain: %w", err)
	}
	if o.TrustDomain == spiffe.DefaultTrustDomain {
		return fmt.Errorf("the control plane trust domain cannot be %q, the apps' default", spiffe.DefaultTrustDomain)
	}
	return nil
}

// Server is the CA: the signing service and the material behind it. It is
// a control plane Part.
type Server struct {
	opts Options
	log  *slog.Logger

	ca     *Authority
	digest [sha256.Size]byte // of the token
	id     spiffe.ID         // the CA's own identity

	own *ownCert // the CA's own serving certificate

	mu     sync.Mutex
	ln     net.Listener
	srv    *grpc.Server
	served chan struct{}
}

// New returns a server; Start loads or creates the material and serves.
func New(opts Options) *Server {
	opts.setDefaults()
	return &Server{opts: opts, log: opts.Logger}
}

// Name is the part's name.
func (s *Server) Name() string { return "sentry" }

// Start loads (or on first start creates) the material and the token and
// serves the signing service.
func (s *Server) Start(context.Context) (err error) {
	defer func() {
		if err != nil && s.opts.Listener != nil {
			s.opts.Listener.Close()
		}
	}()
	if err := s.opts.validate(); err != nil {
		return err
	}
	ca, created, err := s.loadAuthority()
	if err != nil {
		return err
	}
	s.ca = ca
	token, err := s.loadToken()
	if err != nil {
		return err
	}
	s.digest = sha256.Sum256([]byte(token))
	if s.id, err = spiffe.New(s.opts.TrustDomain, s.opts.Namespace, ServerAppID); err != nil {
		return err
	}
	s.own = &ownCert{s: s, id: s.id}
	if _, err := s.own.get(); err != nil {
		return err
	}
	ln := s.opts.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.opts.Address); err != nil {
			return fmt.Errorf("sentry: %w", err)
		}
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.own.get() },
		})),
		// CSRs are small; the handshake and idle limits are the sidecar's.
		grpc.MaxRecvMsgSize(64<<10),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(100),
	)
	sentryv1.RegisterCAServer(srv, s)
	s.mu.Lock()
	s.ln, s.srv, s.served = ln, srv, make(chan struct{})
	served := s.served
	s.mu.Unlock()
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("the CA stopped serving", "error", err)
		}
	}()
	iss := ca.Issuer()
	s.log.Info("certificate authority ready", "address", ln.Addr().String(), "created", created,
		"trustDomain", s.opts.TrustDomain, "issuerExpiry", iss.NotAfter.UTC().Format(time.RFC3339),
		"roots", len(ca.Roots()), "workloadCertTTL", s.opts.WorkloadCertTTL.String())
	return nil
}

// loadAuthority loads the supplied files, else Dir's material, else
// generates and saves it.
func (s *Server) loadAuthority() (ca *Authority, created bool, err error) {
	o := s.opts
	now := o.Now()
	if o.RootCertFile != "" {
		ca, err := Load(o.RootCertFile, o.IssuerCertFile, o.IssuerKeyFile, now)
		return ca, false, err
	}
	files := []string{filepath.Join(o.Dir, RootCertFile), filepath.Join(o.Dir, IssuerCertFile), filepath.Join(o.Dir, IssuerKeyFile)}
	present := 0
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			present++
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
	}
	switch present {
	case 3:
		ca, err := Load(files[0], files[1], files[2], now)
		return ca, false, err
	case 0:
		ca, err := Generate(now, o.TrustDomain)
		if err != nil {
			return nil, false, err
		}
		if err := ca.Save(o.Dir); err != nil {
			return nil, false, fmt.Errorf("saving the CA: %w", err)
		}
		return ca, true, nil
	}
	return nil, false, fmt.Errorf("%s holds part of a CA (%s, %s and %s go together); restore the missing files or remove the others to create a new CA", o.Dir, RootCertFile, IssuerCertFile, IssuerKeyFile)
}

// loadToken reads the token file, creating it with a random token when
// it does not exist. Surrounding white space is not part of the token.
func (s *Server) loadToken() (string, error) {
	f := s.opts.TokenFile
	data, err := os.ReadFile(f)
	if errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		token := hex.EncodeToString(b)
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			return "", err
		}
		if err := writeFileAtomic(f, []byte(token+"\n")); err != nil {
			return "", fmt.Errorf("writing the sentry token: %w", err)
		}
		return token, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the sentry token: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("the sentry token file %s is empty", f)
	}
	return token, nil
}

// ownCert is a certificate the CA issues to a service of its own
// process (itself, an in-process placement), replaced when 70% of its
// life has passed.
type ownCert struct {
	s  *Server
	id spiffe.ID

	mu    sync.Mutex
	cert  *tls.Certificate
	renew time.Time
}

func (o *ownCert) get() (*tls.Certificate, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.s
	now := s.opts.Now()
	if o.cert != nil && now.Before(o.renew) {
		return o.cert, nil
	}
	if s.ca == nil {
		return nil, errors.New("the CA has not started")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	chain, err := s.ca.Sign(SignRequest{PublicKey: key.Public(), ID: o.id, TTL: s.opts.WorkloadCertTTL, ClockSkew: s.opts.AllowedClockSkew, Now: now})
	if err != nil {
		return nil, fmt.Errorf("issuing the certificate of %s: %w", o.id, err)
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	o.cert = c
	o.renew = now.Add(chain[0].NotAfter.Sub(now) * 7 / 10)
	return c, nil
}

// ServiceCertificate returns the source of the certificate of a control
// plane service hosted in the CA's process, whose identity is Dapr's
// spiffe://{trustDomain}/ns/{namespace}/dapr-{service} (e.g. "placement"):
// the certificate is issued directly, without a request over the network,
// and renewed when 70% of its life has passed. The source may be taken
// before Start, but the CA must have started (in the same goroutine,
// before the service) when it is first called.
func (s *Server) ServiceCertificate(service string) (func() (*tls.Certificate, error), spiffe.ID, error) {
	if !controlPlaneService(service) {
		return nil, spiffe.ID{}, fmt.Errorf("%q is not a control plane service", service)
	}
	id, err := spiffe.New(s.opts.TrustDomain, s.opts.Namespace, "dapr-"+service)
	if err != nil {
		return nil, spiffe.ID{}, err
	}
	o := &ownCert{s: s, id: id}
	return o.get, id, nil
}

// RootPool is the trust anchors as a pool, for verifying workload
// certificates in the CA's process (after Start).
func (s *Server) RootPool() *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range s.ca.Roots() {
		pool.AddCert(c)
	}
	return pool
}

// Addr is the address the service listens on, "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// TrustBundle is the PEM of the trust anchors sidecars verify against.
func (s *Server) TrustBundle() []byte { return s.ca.TrustBundle() }

// Roots are the trust anchors.
func (s *Server) Roots() []*x509.Certificate { return s.ca.Roots() }

// TokenFile is the file holding the token sidecars present.
func (s *Server) TokenFile() string { return s.opts.TokenFile }

// ID is the CA's own identity.
func (s *Server) ID() spiffe.ID { return s.id }

// Healthy reports whether the service serves with a valid issuer.
func (s *Server) Healthy() error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return errors.New("not serving")
	}
	if iss := s.ca.Issuer(); s.opts.Now().After(iss.NotAfter) {
		return fmt.Errorf("the issuer certificate expired at %s", iss.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// Stop stops serving, waiting for calls in flight until ctx ends; a
// server that never started closes the listener it was given.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, served, started := s.srv, s.served, s.ln != nil
	s.srv = nil
	s.mu.Unlock()
	if !started && s.opts.Listener != nil {
		// Never started: release the listener it was given.
		s.opts.Listener.Close()
	}
	if srv == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		srv.Stop()
		<-done
	}
	<-served
	return nil
}

// Sign checks a request as SignCertificate does and issues the
// certificate; it is the service without the transport.
func (s *Server) Sign(req *sentryv1.SignCertificateRequest) (*sentryv1.SignCertificateResponse, error) {
	return s.sign(context.Background(), req)
}

func (s *Server) sign(ctx context.Context, req *sentryv1.SignCertificateRequest) (*sentryv1.SignCertificateResponse, error) {
	var id spiffe.ID
	switch req.GetTokenValidator() {
	case sentryv1.SignCertificateRequest_UNKNOWN, sentryv1.SignCertificateRequest_INSECURE, sentryv1.SignCertificateRequest_JWKS:
		// daprd sends JWKS with a token file (DAPR_SENTRY_TOKEN_FILE),
		// else UNKNOWN; both mean the shared token here.
		given := sha256.Sum256([]byte(strings.TrimSpace(req.GetToken())))
		if subtle.ConstantTimeCompare(given[:], s.digest[:]) != 1 {
			return nil, status.Error(codes.PermissionDenied, "the token is not valid")
		}
		var err error
		if id, err = s.identity(req); err != nil {
			return nil, err
		}
	case sentryv1.SignCertificateRequest_KUBERNETES:
		// The pod's service-account token, reviewed by the API server
		// (kubernetes.go); refused when no API access is configured.
		var err error
		if id, err = s.kubeIdentity(ctx, req); err != nil {
			return nil, err
		}
	default:
		return nil, status.Error(codes.InvalidArgument, "the requested validator is not enabled")
	}
	csr, err := parseCSR(req.GetCertificateSigningRequest())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := csrMatches(csr, id); err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	chain, err := s.ca.Sign(SignRequest{
		PublicKey: csr.PublicKey, ID: id,
		TTL: s.opts.WorkloadCertTTL, ClockSkew: s.opts.AllowedClockSkew, Now: s.opts.Now(),
	})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to sign certificate: %v", err)
	}
	return &sentryv1.SignCertificateResponse{
		WorkloadCertificate:    EncodeCertificates(chain),
		TrustChainCertificates: [][]byte{s.ca.TrustBundle()},
		ValidUntil:             timestamppb.New(chain[0].NotAfter),
	}, nil
}

// SignCertificate implements dapr.proto.sentry.v1.CA.
func (s *Server) SignCertificate(ctx context.Context, req *sentryv1.SignCertificateRequest) (*sentryv1.SignCertificateResponse, error) {
	resp, err := s.sign(ctx, req)
	if err != nil {
		s.log.Info("certificate request refused", "app_id", req.GetId(), "namespace", req.GetNamespace(), "error", status.Convert(err).Message())
		return nil, err
	}
	s.log.Debug("certificate issued", "app_id", req.GetId(), "namespace", req.GetNamespace(), "validUntil", resp.GetValidUntil().AsTime().Format(time.RFC3339))
	return resp, nil
}

// identity is the SPIFFE ID a request asks for: its trust domain
// ("public" when empty, as Dapr), namespace and app id.
func (s *Server) identity(req *sentryv1.SignCertificateRequest) (spiffe.ID, error) {
	if err := checkRequest(req); err != nil {
		return spiffe.ID{}, err
	}
	td := req.GetTrustDomain()
	if td == "" {
		td = spiffe.DefaultTrustDomain
	}
	if td == s.opts.TrustDomain {
		// Only the control plane's own services live there; a token
		// holder must not be able to pose as the CA.
		return spiffe.ID{}, status.Errorf(codes.PermissionDenied, "trust domain %q is the control plane's; workloads cannot be issued identities in it", td)
	}
	id, err := spiffe.New(td, req.GetNamespace(), req.GetId())
	if err != nil {
		return spiffe.ID{}, status.Errorf(codes.InvalidArgument, "invalid request: %v", err)
	}
	return id, nil
}

// checkRequest refuses a request without an app id and namespace or with
// an app id Dapr does not allow.
func checkRequest(req *sentryv1.SignCertificateRequest) error {
	appID := req.GetId()
	switch {
	case appID == "":
		return status.Error(codes.InvalidArgument, "invalid request: the app id is empty")
	case len(appID) > maxAppIDLength:
		return status.Error(codes.InvalidArgument, "invalid request: app ID must be 64 characters or less")
	case strings.Contains(appID, "."):
		return status.Error(codes.InvalidArgument, "invalid request: the app id cannot contain dots")
	case req.GetNamespace() == "":
		return status.Error(codes.InvalidArgument, "invalid request: namespace is required")
	}
	return nil
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, errors.New("invalid request: CSR is required")
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("invalid certificate signing request")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to parse certificate signing request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errors.New("invalid signature")
	}
	return csr, nil
}

// csrMatches refuses a CSR that claims another identity than the request:
// URI SANs other than exactly the SPIFFE ID to issue, or any DNS, IP or
// e-mail SAN. The certificate is built from the request, never the CSR,
// so this only makes a confused or forged request fail loudly.
func csrMatches(csr *x509.CertificateRequest, id spiffe.ID) error {
	if len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 || len(csr.EmailAddresses) > 0 {
		return errors.New("the certificate signing request may not ask for DNS, IP or e-mail names")
	}
	switch len(csr.URIs) {
	case 0:
		return nil
	case 1:
		if csr.URIs[0].String() == id.String() {
			return nil
		}
		return fmt.Errorf("the certificate signing request is for %s, the request for %s", csr.URIs[0], id)
	}
	return fmt.Errorf("the certificate signing request names %d identities, the request one (%s)", len(csr.URIs), id)
}

// controlPlaneService reports whether name is one of Dapr's control plane
// services, which alone may hold control plane identities.
func controlPlaneService(name string) bool {
	switch name {
	case "operator", "placement", "injector", "sentry", "scheduler":
		return true
	}
	return false
}
