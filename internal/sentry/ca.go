package sentry

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// File names in a CA directory: Dapr's sentry names (its
// --issuer-credentials directory holds the same three), so either can use
// the other's material.
const (
	RootCertFile   = "ca.crt"
	IssuerCertFile = "issuer.crt"
	IssuerKeyFile  = "issuer.key"
	TokenFile      = "token"
)

// caValidity is the lifetime of a generated root and issuer, as Dapr's
// self-signed ones.
const caValidity = 365 * 24 * time.Hour

// Authority is the certificate authority's material: the trust bundle
// (one or more roots; more than one while a root is being rotated) and the
// issuer that signs workload certificates, with its chain up to a root.
type Authority struct {
	roots    []*x509.Certificate
	rootsPEM []byte
	// chain is the issuer certificate and any intermediates above it, not
	// the root; workload certificates are sent with it.
	chain []*x509.Certificate
	key   crypto.Signer
}

// Roots are the trust anchors.
func (a *Authority) Roots() []*x509.Certificate { return a.roots }

// TrustBundle is the trust anchors, PEM-encoded.
func (a *Authority) TrustBundle() []byte { return a.rootsPEM }

// Issuer is the certificate that signs workload certificates.
func (a *Authority) Issuer() *x509.Certificate { return a.chain[0] }

// Generate creates a self-signed root and an issuer it signs (ECDSA
// P-256, valid one year). The root's private key is not kept: only the
// issuer's is needed to sign, so a stolen CA directory cannot mint a new
// issuer.
func Generate(now time.Time, trustDomain string) (*Authority, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "mecha root CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating the root certificate: %w", err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	issKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	issTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "mecha issuer CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	issDER, err := x509.CreateCertificate(rand.Reader, issTmpl, root, issKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("creating the issuer certificate: %w", err)
	}
	iss, err := x509.ParseCertificate(issDER)
	if err != nil {
		return nil, err
	}
	return newAuthority([]*x509.Certificate{root}, []*x509.Certificate{iss}, issKey, now)
}

// newAuthority checks that the material fits together: the key is the
// issuer's, the issuer is a CA that chains to one of the roots, and the
// issuer is valid now.
func newAuthority(roots, chain []*x509.Certificate, key crypto.Signer, now time.Time) (*Authority, error) {
	if len(roots) == 0 {
		return nil, errors.New("no root certificate")
	}
	if len(chain) == 0 {
		return nil, errors.New("no issuer certificate")
	}
	for _, r := range roots {
		if !r.IsCA {
			return nil, fmt.Errorf("root %q is not a CA certificate", r.Subject)
		}
	}
	iss := chain[0]
	if !iss.IsCA || iss.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("issuer %q is not a CA certificate that may sign certificates", iss.Subject)
	}
	if !publicKeysEqual(iss.PublicKey, key.Public()) {
		return nil, errors.New("the issuer key does not belong to the issuer certificate")
	}
	if now.Before(iss.NotBefore) || now.After(iss.NotAfter) {
		return nil, fmt.Errorf("the issuer certificate is valid from %s to %s, not now", iss.NotBefore.UTC().Format(time.RFC3339), iss.NotAfter.UTC().Format(time.RFC3339))
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := iss.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the issuer does not chain to the root certificates: %w", err)
	}
	return &Authority{roots: roots, rootsPEM: EncodeCertificates(roots), chain: chain, key: key}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Load reads the material from PEM files: rootFile may hold several roots
// (the trust bundle), issuerFile the issuer first then any intermediates,
// keyFile the issuer's key (PKCS#8, SEC 1 EC or PKCS#1 RSA).
func Load(rootFile, issuerFile, keyFile string, now time.Time) (*Authority, error) {
	roots, err := readCerts(rootFile)
	if err != nil {
		return nil, err
	}
	chain, err := readCerts(issuerFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	a, err := newAuthority(roots, chain, key, now)
	if err != nil {
		return nil, fmt.Errorf("%s, %s, %s: %w", rootFile, issuerFile, keyFile, err)
	}
	return a, nil
}

func readCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return certs, nil
}

// ParseCertificates decodes every CERTIFICATE block of PEM data; data
// with none is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
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
		return nil, errors.New("no PEM certificate found")
	}
	return out, nil
}

// ParsePrivateKey decodes the first private key block of PEM data.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T", key)
		}
		return s, nil
	}
}

// Save writes the material to dir as ca.crt, issuer.crt and issuer.key,
// each 0600, in a 0700 directory. Each file is written whole to a
// temporary name and renamed, so a crash leaves either the old file or the
// new one.
func (a *Authority) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(a.key)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{IssuerKeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{IssuerCertFile, EncodeCertificates(a.chain)},
		{RootCertFile, a.rootsPEM},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic writes data to file with mode 0600.
func writeFileAtomic(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// SignRequest is one workload certificate to issue.
type SignRequest struct {
	PublicKey crypto.PublicKey
	ID        spiffe.ID
	// DNSNames are added as DNS SANs (the CA's own server certificate).
	DNSNames []string
	// TTL is the lifetime from now; the certificate ends no later than the
	// issuer.
	TTL time.Duration
	// ClockSkew backdates the start, so peers whose clocks run behind
	// accept a certificate issued a moment ago.
	ClockSkew time.Duration
	Now       time.Time
}

// Sign issues a workload certificate for req and returns it first, then
// the issuer chain (without the root).
func (a *Authority) Sign(req SignRequest) ([]*x509.Certificate, error) {
	if req.ID.IsZero() {
		return nil, errors.New("no identity to sign")
	}
	if err := checkPublicKey(req.PublicKey); err != nil {
		return nil, err
	}
	if req.TTL <= 0 {
		return nil, errors.New("the certificate lifetime must be positive")
	}
	iss := a.chain[0]
	notAfter := req.Now.Add(req.TTL)
	if notAfter.After(iss.NotAfter) {
		notAfter = iss.NotAfter
	}
	notBefore := req.Now.Add(-req.ClockSkew)
	if notBefore.Before(iss.NotBefore) {
		notBefore = iss.NotBefore
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{req.ID.URL()},
		DNSNames:              req.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, iss, req.PublicKey, a.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return append([]*x509.Certificate{leaf}, a.chain...), nil
}

// checkPublicKey accepts the key types and sizes a workload may use.
func checkPublicKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("ECDSA keys must use P-256 or P-384")
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return errors.New("RSA keys must have at least 2048 bits")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported public key type %T", k)
	}
	return nil
}

// serial is a random 128-bit serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// EncodeCertificates PEM-encodes certs in order.
func EncodeCertificates(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
