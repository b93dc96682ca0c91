package placement

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// TLSOptions make the placement serve sidecars over mutual TLS, as Dapr's
// placement does when mTLS is on: it presents a certificate with the
// identity spiffe://{controlPlaneTrustDomain}/ns/{namespace}/dapr-placement
// (which sidecars check), and accepts only sidecars whose certificate
// chains to the trust anchors; a sidecar may then report only the app id
// and namespace of its certificate.
type TLSOptions struct {
	// Certificate returns the placement's current certificate; it is
	// called at every handshake, so a renewed certificate is used at once.
	Certificate func() (*tls.Certificate, error)
	// Roots returns the trust anchors client certificates must chain to.
	Roots func() *x509.CertPool
}

// plaintextRefused is the message a sidecar that connects without TLS
// gets from a placement that requires mTLS.
const plaintextRefused = "this placement service requires mutual TLS: the sidecar connected without TLS; give it a workload certificate (mTLS on, --sentry-address or --enable-mtls)"

// tlsHandshakeRecord is the first byte of a TLS handshake.
const tlsHandshakeRecord = 0x16

// serverCreds serve TLS, and plaintext connections only so far as to
// answer every call with a clear refusal (see plaintextInfo): a sidecar
// without mTLS then logs why instead of a bare handshake failure.
type serverCreds struct {
	credentials.TransportCredentials
}

func newServerCreds(o *TLSOptions) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return o.Certificate()
		},
		// Verified in VerifyConnection, against the current roots.
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifyClient(cs.PeerCertificates, o.Roots())
			return err
		},
	}
	return &serverCreds{TransportCredentials: credentials.NewTLS(cfg)}
}

// ServerHandshake looks at the first byte: a TLS handshake goes to TLS,
// anything else is served as plaintext and refused per call.
func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var b [1]byte
	if _, err := io.ReadFull(raw, b[:]); err != nil {
		return nil, nil, err
	}
	conn := &prefixConn{Conn: raw, prefix: b[:]}
	if b[0] != tlsHandshakeRecord {
		return conn, plaintextInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
	}
	return c.TransportCredentials.ServerHandshake(conn)
}

// Clone keeps the wrapper.
func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone()}
}

// plaintextInfo marks a connection made without TLS.
type plaintextInfo struct{ credentials.CommonAuthInfo }

func (plaintextInfo) AuthType() string { return "insecure" }

// prefixConn replays bytes already read from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// verifyClient checks a sidecar's chain against roots and returns its
// SPIFFE ID.
func verifyClient(certs []*x509.Certificate, roots *x509.CertPool) (spiffe.ID, error) {
	if len(certs) == 0 {
		return spiffe.ID{}, errors.New("the client presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return spiffe.ID{}, fmt.Errorf("the client's certificate: %w", err)
	}
	id, err := spiffe.FromCertificate(certs[0])
	if err != nil {
		return spiffe.ID{}, fmt.Errorf("the client's certificate: %w", err)
	}
	return id, nil
}

// clientID is the identity of the sidecar on a stream when TLS is on:
// Unauthenticated for a plaintext connection (with the reason, which the
// sidecar logs).
func (s *Server) clientID(ctx context.Context) (spiffe.ID, bool, error) {
	if s.opts.TLS == nil {
		return spiffe.ID{}, false, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffe.ID{}, false, status.Error(codes.Unauthenticated, "failed to get client ID from context")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return spiffe.ID{}, false, status.Error(codes.Unauthenticated, plaintextRefused)
	}
	// The chain was verified in the handshake; this reads the identity.
	id, err := spiffe.FromCertificate(info.State.PeerCertificates[0])
	if err != nil {
		return spiffe.ID{}, false, status.Error(codes.Unauthenticated, "failed to get client ID from context")
	}
	return id, true, nil
}

// checkHost refuses a report for another app or namespace than the
// certificate's, as Dapr's placement (a report without a namespace takes
// the certificate's).
func checkHost(h *placementv1.Host, id spiffe.ID) error {
	if h.GetNamespace() == "" {
		h.Namespace = id.Namespace
	}
	if h.GetNamespace() != id.Namespace {
		return status.Errorf(codes.PermissionDenied, "provided client namespace %s doesn't match the one in the Spiffe ID (%s)", h.GetNamespace(), id.Namespace)
	}
	if h.GetId() != id.AppID {
		return status.Errorf(codes.PermissionDenied, "client ID %s is not allowed", h.GetId())
	}
	return nil
}

// refusedLogEvery bounds the refusal log lines per client address (a
// refused sidecar retries every few seconds).
const refusedLogEvery = time.Minute

// refused logs a refused stream, at most once per refusedLogEvery for each
// client host.
func (s *Server) refused(ctx context.Context, err error) {
	addr := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
		if h, _, e := net.SplitHostPort(addr); e == nil {
			addr = h
		}
	}
	now := time.Now()
	if last, ok := s.refusedAt.Load(addr); ok && now.Sub(last.(time.Time)) < refusedLogEvery {
		return
	}
	s.refusedAt.Store(addr, now)
	s.log.Warn("placement refused a sidecar", "client", addr, "reason", status.Convert(err).Message())
}
