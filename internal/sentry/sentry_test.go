package sentry_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// startCA starts a CA on 127.0.0.1:0 and stops it when the test ends.
func startCA(t *testing.T, o sentry.Options) *sentry.Server {
	t.Helper()
	if o.Address == "" && o.Listener == nil {
		o.Address = "127.0.0.1:0"
	}
	s := sentry.New(o)
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("starting the CA: %v", err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// client dials the CA, verifying its certificate against bundle and its
// identity against want, as a sidecar does.
func client(t *testing.T, addr string, bundle []byte, want string) sentryv1.CAClient {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("no certificate in the bundle")
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true, // verified below, by SPIFFE ID
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
				return err
			}
			id, err := spiffe.FromCertificate(cs.PeerCertificates[0])
			if err != nil {
				return err
			}
			if id.String() != want {
				t.Errorf("the CA presented %s, want %s", id, want)
			}
			return nil
		},
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return sentryv1.NewCAClient(cc)
}

func newCSR(t *testing.T, tmpl *x509.CertificateRequest) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func readToken(t *testing.T, s *sentry.Server) string {
	t.Helper()
	b, err := os.ReadFile(s.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func parseChain(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := sentry.ParseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// verify checks that chain verifies against the PEM bundle now.
func verify(chain []*x509.Certificate, bundle []byte, at time.Time) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// TestFirstStartIssues: on first start the CA creates its root, issuer and
// token as private files and issues, over gRPC, a certificate for the
// requested SPIFFE ID with the configured lifetime, backdated by the
// allowed skew, with the trust bundle.
func TestFirstStartIssues(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	s := startCA(t, sentry.Options{Dir: dir, WorkloadCertTTL: time.Hour, AllowedClockSkew: time.Minute})
	for _, f := range []string{sentry.RootCertFile, sentry.IssuerCertFile, sentry.IssuerKeyFile, sentry.TokenFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the CA directory: %v, %v; want mode 0700", fi.Mode().Perm(), err)
	}
	root, err := os.ReadFile(filepath.Join(dir, sentry.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, s.TrustBundle()) {
		t.Fatal("the trust bundle is not ca.crt")
	}
	key, csr := newCSR(t, nil)
	c := client(t, s.Addr(), root, "spiffe://cluster.local/ns/default/dapr-sentry")
	before := time.Now()
	resp, err := c.SignCertificate(context.Background(), &sentryv1.SignCertificateRequest{
		Id: "app1", Namespace: "default", Token: readToken(t, s), CertificateSigningRequest: csr,
		TokenValidator: sentryv1.SignCertificateRequest_JWKS,
	})
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, resp.GetWorkloadCertificate())
	leaf := chain[0]
	if len(chain) != 2 {
		t.Errorf("the chain has %d certificates, want the leaf and the issuer", len(chain))
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://public/ns/default/app1" {
		t.Errorf("URI SANs %v, want spiffe://public/ns/default/app1", leaf.URIs)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("the certificate is not for the CSR's key")
	}
	if d := leaf.NotAfter.Sub(before); d < time.Hour-time.Second || d > time.Hour+5*time.Second {
		t.Errorf("lifetime %v, want one hour", d)
	}
	if d := before.Sub(leaf.NotBefore); d < 59*time.Second || d > 2*time.Minute {
		t.Errorf("backdated by %v, want the allowed skew of one minute", d)
	}
	if !resp.GetValidUntil().AsTime().Equal(leaf.NotAfter) {
		t.Errorf("valid_until %v, leaf expires %v", resp.GetValidUntil().AsTime(), leaf.NotAfter)
	}
	if len(resp.GetTrustChainCertificates()) != 1 || !bytes.Equal(resp.GetTrustChainCertificates()[0], root) {
		t.Errorf("trust chain %q, want ca.crt", resp.GetTrustChainCertificates())
	}
	if err := verify(chain, root, time.Now()); err != nil {
		t.Errorf("the certificate does not verify against the root: %v", err)
	}
	if leaf.IsCA || leaf.ExtKeyUsage == nil {
		t.Errorf("leaf IsCA=%v EKU=%v", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy: %v", err)
	}
}

// TestRestartKeepsRoot: a second start on the same directory loads the
// root, issuer and token instead of making new ones; certificates of the
// second run verify against the first run's bundle.
func TestRestartKeepsRoot(t *testing.T) {
	dir := t.TempDir()
	s1 := sentry.New(sentry.Options{Dir: dir, Address: "127.0.0.1:0"})
	if err := s1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	bundle1, token1 := s1.TrustBundle(), readToken(t, s1)
	if err := s1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := startCA(t, sentry.Options{Dir: dir})
	if !bytes.Equal(s2.TrustBundle(), bundle1) {
		t.Fatal("the root changed across a restart")
	}
	if readToken(t, s2) != token1 {
		t.Fatal("the token changed across a restart")
	}
	_, csr := newCSR(t, nil)
	resp, err := client(t, s2.Addr(), bundle1, "spiffe://cluster.local/ns/default/dapr-sentry").SignCertificate(context.Background(),
		&sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token1, CertificateSigningRequest: csr})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(parseChain(t, resp.GetWorkloadCertificate()), bundle1, time.Now()); err != nil {
		t.Fatalf("a certificate of the restarted CA does not verify against the first bundle: %v", err)
	}
}

// TestRefusals: every request that does not carry the token, or asks for
// an identity it may not have, is refused with Dapr's codes.
func TestRefusals(t *testing.T) {
	s := startCA(t, sentry.Options{Dir: t.TempDir(), TrustDomain: "cp.example"})
	c := client(t, s.Addr(), s.TrustBundle(), "spiffe://cp.example/ns/default/dapr-sentry")
	token := readToken(t, s)
	_, csr := newCSR(t, nil)
	_, csrOther := newCSR(t, &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "public", Path: "/ns/default/other"}}})
	_, csrSame := newCSR(t, &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "spiffe", Host: "public", Path: "/ns/default/app1"}}})
	_, csrDNS := newCSR(t, &x509.CertificateRequest{DNSNames: []string{"evil.example"}})
	badSig := bytes.Clone(csr)
	// Flip a byte inside the base64 body: the signature no longer holds.
	badSig[len(badSig)/2] ^= 0x01
	cases := []struct {
		name string
		req  *sentryv1.SignCertificateRequest
		code codes.Code
	}{
		{"no token", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", CertificateSigningRequest: csr}, codes.PermissionDenied},
		{"wrong token", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token + "x", CertificateSigningRequest: csr}, codes.PermissionDenied},
		{"token prefix", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token[:10], CertificateSigningRequest: csr}, codes.PermissionDenied},
		{"kubernetes validator", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token, CertificateSigningRequest: csr, TokenValidator: sentryv1.SignCertificateRequest_KUBERNETES}, codes.InvalidArgument},
		{"CSR for another app", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token, CertificateSigningRequest: csrOther}, codes.PermissionDenied},
		{"CSR with a DNS name", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token, CertificateSigningRequest: csrDNS}, codes.PermissionDenied},
		{"control plane trust domain", &sentryv1.SignCertificateRequest{Id: "dapr-sentry", Namespace: "default", TrustDomain: "cp.example", Token: token, CertificateSigningRequest: csr}, codes.PermissionDenied},
		{"no CSR", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token}, codes.InvalidArgument},
		{"not a CSR", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token, CertificateSigningRequest: s.TrustBundle()}, codes.InvalidArgument},
		{"bad CSR signature", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token, CertificateSigningRequest: badSig}, codes.InvalidArgument},
		{"no app id", &sentryv1.SignCertificateRequest{Namespace: "default", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
		{"app id with a dot", &sentryv1.SignCertificateRequest{Id: "a.b", Namespace: "default", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
		{"app id with a slash", &sentryv1.SignCertificateRequest{Id: "a/b", Namespace: "default", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
		{"app id too long", &sentryv1.SignCertificateRequest{Id: strings.Repeat("a", 65), Namespace: "default", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
		{"no namespace", &sentryv1.SignCertificateRequest{Id: "app1", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
		{"bad trust domain", &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", TrustDomain: "Public", Token: token, CertificateSigningRequest: csr}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SignCertificate(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			if strings.Contains(status.Convert(err).Message(), token) {
				t.Fatal("the error message contains the token")
			}
		})
	}
	t.Run("accepted: CSR naming the same identity, another trust domain", func(t *testing.T) {
		resp, err := c.SignCertificate(context.Background(), &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: token + "\n", CertificateSigningRequest: csrSame})
		if err != nil {
			t.Fatal(err)
		}
		if got := parseChain(t, resp.GetWorkloadCertificate())[0].URIs[0].String(); got != "spiffe://public/ns/default/app1" {
			t.Fatalf("issued %s", got)
		}
		resp, err = c.SignCertificate(context.Background(), &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "prod", TrustDomain: "domain1", Token: token, CertificateSigningRequest: csr})
		if err != nil {
			t.Fatal(err)
		}
		if got := parseChain(t, resp.GetWorkloadCertificate())[0].URIs[0].String(); got != "spiffe://domain1/ns/prod/app1" {
			t.Fatalf("issued %s", got)
		}
	})
}

// saveAuthority generates a CA and writes its files to dir.
func saveAuthority(t *testing.T, dir string) *sentry.Authority {
	t.Helper()
	a, err := sentry.Generate(time.Now(), "example")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSuppliedFiles: a CA started with --ca-root-cert, --ca-issuer-cert
// and --ca-issuer-key signs with that issuer; material that does not fit
// together is refused at start.
func TestSuppliedFiles(t *testing.T) {
	src := t.TempDir()
	saveAuthority(t, src)
	other := t.TempDir()
	saveAuthority(t, other)
	files := func(dir string) (string, string, string) {
		return filepath.Join(dir, sentry.RootCertFile), filepath.Join(dir, sentry.IssuerCertFile), filepath.Join(dir, sentry.IssuerKeyFile)
	}
	root, iss, key := files(src)
	s := startCA(t, sentry.Options{Dir: t.TempDir(), RootCertFile: root, IssuerCertFile: iss, IssuerKeyFile: key})
	want, _ := os.ReadFile(root)
	if !bytes.Equal(s.TrustBundle(), want) {
		t.Fatal("the CA does not use the supplied root")
	}
	_, csr := newCSR(t, nil)
	resp, err := s.Sign(&sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: readToken(t, s), CertificateSigningRequest: csr})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(parseChain(t, resp.GetWorkloadCertificate()), want, time.Now()); err != nil {
		t.Fatal(err)
	}

	oroot, oiss, okey := files(other)
	bad := []struct {
		name            string
		root, iss, key  string
		wantErrContains string
	}{
		{"two of three", root, iss, "", "together"},
		{"key of another issuer", root, iss, okey, "does not belong"},
		{"issuer of another root", root, oiss, okey, "does not chain"},
		{"no certificate in the root file", key, iss, key, "no PEM certificate"},
		{"missing file", filepath.Join(src, "nope.crt"), iss, key, "no such file"},
	}
	_ = oroot
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			s := sentry.New(sentry.Options{Dir: t.TempDir(), Address: "127.0.0.1:0", RootCertFile: b.root, IssuerCertFile: b.iss, IssuerKeyFile: b.key})
			err := s.Start(context.Background())
			if err == nil {
				s.Stop(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), b.wantErrContains) {
				t.Fatalf("error %q lacks %q", err, b.wantErrContains)
			}
		})
	}
	t.Run("partial directory", func(t *testing.T) {
		dir := t.TempDir()
		data, _ := os.ReadFile(root)
		if err := os.WriteFile(filepath.Join(dir, sentry.RootCertFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		s := sentry.New(sentry.Options{Dir: dir, Address: "127.0.0.1:0"})
		if err := s.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "part of a CA") {
			s.Stop(context.Background())
			t.Fatalf("got %v, want a refusal to start on part of a CA", err)
		}
	})
	t.Run("apps' trust domain for the control plane", func(t *testing.T) {
		s := sentry.New(sentry.Options{Dir: t.TempDir(), Address: "127.0.0.1:0", TrustDomain: "public"})
		if err := s.Start(context.Background()); err == nil {
			s.Stop(context.Background())
			t.Fatal("started with the control plane in the apps' trust domain")
		}
	})
}

// TestRootRotationBundle: during a root rotation the CA is given a bundle
// of both roots and an issuer under the new one; it returns both roots, and
// a verifier with that bundle accepts certificates from the old issuer
// (peers not yet renewed) and the new one alike, while a verifier with the
// old root alone refuses the new ones (why the bundle must reach every
// sidecar before the issuer changes).
func TestRootRotationBundle(t *testing.T) {
	oldDir, newDir := t.TempDir(), t.TempDir()
	saveAuthority(t, oldDir)
	saveAuthority(t, newDir)
	oldRoot, _ := os.ReadFile(filepath.Join(oldDir, sentry.RootCertFile))
	newRoot, _ := os.ReadFile(filepath.Join(newDir, sentry.RootCertFile))
	bundleFile := filepath.Join(t.TempDir(), "bundle.crt")
	bundle := append(append([]byte{}, oldRoot...), newRoot...)
	if err := os.WriteFile(bundleFile, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	sign := func(s *sentry.Server) []*x509.Certificate {
		_, csr := newCSR(t, nil)
		resp, err := s.Sign(&sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: readToken(t, s), CertificateSigningRequest: csr})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetTrustChainCertificates(); len(got) != 1 || !bytes.Equal(got[0], bundle) {
			t.Fatalf("trust chain %q, want both roots", got)
		}
		return parseChain(t, resp.GetWorkloadCertificate())
	}
	// Phase 1: both roots trusted, the old issuer signs.
	phase1 := startCA(t, sentry.Options{Dir: t.TempDir(), RootCertFile: bundleFile,
		IssuerCertFile: filepath.Join(oldDir, sentry.IssuerCertFile), IssuerKeyFile: filepath.Join(oldDir, sentry.IssuerKeyFile)})
	oldCert := sign(phase1)
	// Phase 2: the issuer under the new root signs.
	phase2 := startCA(t, sentry.Options{Dir: t.TempDir(), RootCertFile: bundleFile,
		IssuerCertFile: filepath.Join(newDir, sentry.IssuerCertFile), IssuerKeyFile: filepath.Join(newDir, sentry.IssuerKeyFile)})
	newCert := sign(phase2)
	if len(phase2.Roots()) != 2 {
		t.Fatalf("%d roots loaded", len(phase2.Roots()))
	}
	for name, chain := range map[string][]*x509.Certificate{"old issuer": oldCert, "new issuer": newCert} {
		if err := verify(chain, bundle, time.Now()); err != nil {
			t.Errorf("%s: refused by the two-root bundle: %v", name, err)
		}
	}
	if err := verify(newCert, oldRoot, time.Now()); err == nil {
		t.Error("the old root alone accepts the new issuer's certificate")
	}
}

// TestNoListenerLeak: a CA that fails to start releases its listener.
func TestNoListenerLeak(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := sentry.New(sentry.Options{Listener: ln, RootCertFile: "x"})
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("started")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("the listener is still open")
	}
}

// FuzzSign: no request, however malformed, makes the CA panic, and
// nothing is issued without the token.
func FuzzSign(f *testing.F) {
	dir := f.TempDir()
	s := sentry.New(sentry.Options{Dir: dir, Address: "127.0.0.1:0"})
	if err := s.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Stop(context.Background()) })
	token, err := os.ReadFile(s.TokenFile())
	if err != nil {
		f.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	f.Add("app1", "default", "", []byte(csr), true, int32(0))
	f.Add("a.b", "", "Public", []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"), true, int32(2))
	f.Add("x", "y", "z", []byte{0x30, 0x82}, false, int32(7))
	f.Fuzz(func(t *testing.T, id, ns, td string, csr []byte, withToken bool, validator int32) {
		req := &sentryv1.SignCertificateRequest{Id: id, Namespace: ns, TrustDomain: td, CertificateSigningRequest: csr,
			TokenValidator: sentryv1.SignCertificateRequest_TokenValidator(validator)}
		if withToken {
			req.Token = string(token)
		}
		resp, err := s.Sign(req)
		if err == nil && !withToken {
			t.Fatal("issued without the token")
		}
		if err == nil {
			if _, perr := sentry.ParseCertificates(resp.GetWorkloadCertificate()); perr != nil {
				t.Fatalf("issued an unreadable certificate: %v", perr)
			}
		}
	})
}
