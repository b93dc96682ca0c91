package controlplane

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/security"
	"github.com/mecha-dev/mecha/internal/security/spiffe"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// sentryFlags configure the certificate authority part.
type sentryFlags struct {
	on               bool
	port             int
	trustDomain      string
	namespace        string
	dir              string
	rootCert         string
	issuerCert       string
	issuerKey        string
	workloadCertTTL  time.Duration
	allowedClockSkew time.Duration

	// kubeValidator and kubeconfig enable the KUBERNETES validator
	// (kubernetes.go of the sentry).
	kubeValidator bool
	kubeconfig    string

	// placementMTLS serves the placement over mTLS with a certificate
	// from the CA of this process; placementCert, placementKey and
	// placementAnchors are files for a placement node without one.
	placementMTLS    bool
	placementCert    string
	placementKey     string
	placementAnchors string
}

func (s *sentryFlags) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.on, "sentry", true, "host the certificate authority for mTLS between sidecars (with --local; without it, when --ca-dir or the --ca-* files are given)")
	fs.IntVar(&s.port, "sentry-port", -1, "the CA's gRPC port (default: with --local the home's last, else 50003, else any free port; else 50003; 0: any free port)")
	fs.Lookup("sentry-port").DefValue = "auto"
	fs.StringVar(&s.trustDomain, "trust-domain", sentry.DefaultTrustDomain, "the control plane's trust domain (the CA's own identity spiffe://<trust-domain>/ns/<namespace>/dapr-sentry)")
	fs.StringVar(&s.namespace, "control-plane-namespace", sentry.DefaultNamespace, "the control plane's namespace, in the CA's own identity")
	fs.StringVar(&s.dir, "ca-dir", "", "where the CA keeps its root, issuer and token, created on first start (default with --local: <home>/data/ca)")
	fs.StringVar(&s.rootCert, "ca-root-cert", "", "PEM root certificate(s) to use instead of generated ones (the trust bundle; give several during a root rotation); with --ca-issuer-cert and --ca-issuer-key")
	fs.StringVar(&s.issuerCert, "ca-issuer-cert", "", "PEM issuer certificate (then any intermediates) that signs workload certificates")
	fs.StringVar(&s.issuerKey, "ca-issuer-key", "", "PEM private key of the issuer certificate")
	fs.DurationVar(&s.workloadCertTTL, "workload-cert-ttl", sentry.DefaultWorkloadCertTTL, "lifetime of the workload certificates the CA issues (sidecars renew at 70%)")
	fs.DurationVar(&s.allowedClockSkew, "allowed-clock-skew", sentry.DefaultAllowedClockSkew, "how far issued certificates are backdated for peers whose clocks run behind")
	fs.BoolVar(&s.kubeValidator, "kubernetes-validator", false, "let sidecars prove their identity with their pod's service-account token, reviewed by the Kubernetes API (Dapr's KUBERNETES validator; default: on without --local when running in a pod)")
	fs.Lookup("kubernetes-validator").DefValue = "auto"
	fs.StringVar(&s.kubeconfig, "kubeconfig", "", "the kubeconfig the Kubernetes validator uses (turns it on; default: the pod's service account, else $KUBECONFIG)")
	fs.BoolVar(&s.placementMTLS, "placement-mtls", true, "serve the placement over mutual TLS with a certificate from the CA of this process, or from --placement-tls-cert (sidecars without mTLS are refused, as by Dapr's placement)")
	fs.StringVar(&s.placementCert, "placement-tls-cert", "", "PEM certificate chain of the placement (SPIFFE ID spiffe://<trust-domain>/ns/<namespace>/dapr-placement) for a placement node without a CA; with --placement-tls-key and --placement-trust-anchors")
	fs.StringVar(&s.placementKey, "placement-tls-key", "", "PEM private key of --placement-tls-cert")
	fs.StringVar(&s.placementAnchors, "placement-trust-anchors", "", "PEM root certificates the sidecars' certificates must chain to (with --placement-tls-cert)")
}

// supplied reports whether CA files were given.
func (s *sentryFlags) supplied() bool {
	return s.rootCert != "" || s.issuerCert != "" || s.issuerKey != ""
}

// newSentry builds the CA part on ln, in dir unless files were supplied;
// kube enables the Kubernetes validator.
func (s *sentryFlags) newSentry(dir string, ln net.Listener, kube *sentry.KubernetesOptions, log *slog.Logger) (*sentry.Server, error) {
	if s.workloadCertTTL <= 0 {
		return nil, fmt.Errorf("--workload-cert-ttl %s must be positive", s.workloadCertTTL)
	}
	if s.allowedClockSkew < 0 {
		return nil, fmt.Errorf("--allowed-clock-skew %s must not be negative", s.allowedClockSkew)
	}
	skew := s.allowedClockSkew
	if skew == 0 {
		skew = -1 // none
	}
	return sentry.New(sentry.Options{
		Dir:          dir,
		RootCertFile: s.rootCert, IssuerCertFile: s.issuerCert, IssuerKeyFile: s.issuerKey,
		TrustDomain: s.trustDomain, Namespace: s.namespace,
		WorkloadCertTTL: s.workloadCertTTL, AllowedClockSkew: skew,
		Listener:   ln,
		Kubernetes: kube,
		Logger:     log.With("part", "sentry"),
	}), nil
}

// placementTLS is the placement's mTLS: from the files when given, else
// from the CA of this process (sn); nil (plaintext) when neither or with
// --placement-mtls=false.
func (s *sentryFlags) placementTLS(sn *sentry.Server) (*placement.TLSOptions, error) {
	files := 0
	for _, f := range []string{s.placementCert, s.placementKey, s.placementAnchors} {
		if f != "" {
			files++
		}
	}
	switch {
	case files != 0 && !s.placementMTLS:
		return nil, errors.New("--placement-tls-cert and --placement-mtls=false contradict each other")
	case files != 0 && files != 3:
		return nil, errors.New("give --placement-tls-cert, --placement-tls-key and --placement-trust-anchors together")
	case !s.placementMTLS:
		return nil, nil
	case files == 3:
		return loadPlacementTLS(s.placementCert, s.placementKey, s.placementAnchors)
	case sn != nil:
		cert, _, err := sn.ServiceCertificate("placement")
		if err != nil {
			return nil, err
		}
		return &placement.TLSOptions{Certificate: cert, Roots: sn.RootPool}, nil
	}
	return nil, nil
}

// loadPlacementTLS loads the placement's certificate, which must carry the
// placement's identity, and the trust anchors. They are read once: a new
// certificate takes a restart of the node.
func loadPlacementTLS(certFile, keyFile, anchorsFile string) (*placement.TLSOptions, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--placement-tls-cert: %w", err)
	}
	id, err := spiffe.FromCertificate(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("--placement-tls-cert: %w", err)
	}
	if id.AppID != security.PlacementAppID {
		return nil, fmt.Errorf("--placement-tls-cert is for %s, not a placement (spiffe://<trust-domain>/ns/<namespace>/%s)", id, security.PlacementAppID)
	}
	pem, err := os.ReadFile(anchorsFile)
	if err != nil {
		return nil, fmt.Errorf("--placement-trust-anchors: %w", err)
	}
	roots, err := sentry.ParseCertificates(pem)
	if err != nil {
		return nil, fmt.Errorf("--placement-trust-anchors: %w", err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &placement.TLSOptions{
		Certificate: func() (*tls.Certificate, error) { return &cert, nil },
		Roots:       func() *x509.CertPool { return pool },
	}, nil
}

// sentryListener binds the local CA's port like the placement's: the
// flag's; else the home's last, else sentry.DefaultPort, else any free one
// (sidecars find it in the state file).
func sentryListener(l selfhosted.Layout, host string, flag int, warn func(string, ...any)) (net.Listener, error) {
	at := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	}
	if flag >= 0 {
		if flag > 65535 {
			return nil, fmt.Errorf("--sentry-port %d is out of range", flag)
		}
		ln, err := at(flag)
		if err != nil {
			return nil, fmt.Errorf("sentry: %w", err)
		}
		return ln, nil
	}
	var tries []int
	if st, ok, err := selfhosted.ReadControlPlane(l); err == nil && ok {
		if _, p, err := net.SplitHostPort(st.Sentry); err == nil {
			if n, _ := strconv.Atoi(p); n > 0 {
				tries = append(tries, n)
			}
		}
	}
	tries = append(tries, sentry.DefaultPort)
	for _, port := range tries {
		if ln, err := at(port); err == nil {
			return ln, nil
		}
	}
	warn("the sentry port is taken; using a free one", "ports", tries)
	ln, err := at(0)
	if err != nil {
		return nil, fmt.Errorf("sentry: %w", err)
	}
	return ln, nil
}

// clusterSentry builds the CA of a control plane without --local: only
// when a directory or files are given, on the listen address.
func clusterSentry(cmd *cobra.Command, f *flags, log *slog.Logger) (*sentry.Server, error) {
	s := &f.sentry
	if !s.on || (s.dir == "" && !s.supplied()) {
		return nil, nil
	}
	port := s.port
	if port < 0 {
		port = sentry.DefaultPort
	}
	if port > 65535 {
		return nil, fmt.Errorf("--sentry-port %d is out of range", port)
	}
	kube, err := s.kubernetes(cmd, false)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(f.listenAddress, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("sentry: %w", err)
	}
	srv, err := s.newSentry(s.dir, ln, kube, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return srv, nil
}
