package mechatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"

	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// CA is a certificate authority (the control plane's sentry) running for
// a test.
type CA struct {
	*sentry.Server
	// Dir holds its files (ca.crt, issuer.crt, issuer.key, token).
	Dir string
}

// StartCA starts a CA on 127.0.0.1:0 with its files in a temporary
// directory; ttl 0 is the default lifetime (24h). Issued certificates are
// not backdated, so short lifetimes are exact.
func StartCA(t testing.TB, ttl time.Duration) *CA {
	t.Helper()
	dir := t.TempDir()
	s := sentry.New(sentry.Options{Dir: dir, Address: "127.0.0.1:0", WorkloadCertTTL: ttl, AllowedClockSkew: -1})
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("starting the CA: %v", err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return &CA{Server: s, Dir: dir}
}

// MTLS configures a sidecar to use mTLS with certificates from ca.
func MTLS(ca *CA) func(*runtime.Options) {
	return func(o *runtime.Options) {
		o.Security = runtime.SecurityOptions{SentryAddress: ca.Addr(), TrustAnchors: ca.TrustBundle(), SentryTokenFile: ca.TokenFile()}
	}
}

// With applies several option functions in order.
func With(fs ...func(*runtime.Options)) func(*runtime.Options) {
	return func(o *runtime.Options) {
		for _, f := range fs {
			if f != nil {
				f(o)
			}
		}
	}
}

// Issue obtains from ca a certificate (with its chain and key) for app in
// trust domain td ("" for public) and namespace "default", as a sidecar
// would.
func (ca *CA) Issue(t testing.TB, td, app string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(ca.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ca.Sign(&sentryv1.SignCertificateRequest{
		Id: app, Namespace: "default", TrustDomain: td, Token: strings.TrimSpace(string(token)),
		CertificateSigningRequest: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
	})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(resp.GetWorkloadCertificate(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
