package placement_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	placementv1 "github.com/dapr/dapr/pkg/proto/placement/v1"
	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/internal/placement"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/security"
	"github.com/mecha-dev/mecha/internal/sentry"
	"github.com/mecha-dev/mecha/internal/syncbuf"
)

// startCA starts a CA (the control plane's sentry) for a test.
func startCA(t *testing.T) *sentry.Server {
	t.Helper()
	s := sentry.New(sentry.Options{Dir: t.TempDir(), Address: "127.0.0.1:0"})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// startTLSServer starts a placement whose certificate comes from ca, for
// the control plane service svc ("placement" in production).
func startTLSServer(t *testing.T, ca *sentry.Server, svc string, log *slog.Logger) *placement.Server {
	t.Helper()
	cert, _, err := ca.ServiceCertificate(svc)
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, placement.Options{Logger: log, TLS: &placement.TLSOptions{Certificate: cert, Roots: ca.RootPool}})
}

// provider is a sidecar's mTLS provider with a certificate from ca.
func provider(t *testing.T, ca *sentry.Server, app, ns string) *security.Provider {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := security.Start(ctx, security.Options{SentryAddress: ca.Addr(), AppID: app, Namespace: ns, TrustAnchors: ca.TrustBundle(), TokenFile: ca.TokenFile()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// issue gets a certificate for app from ca without a provider.
func issue(t *testing.T, ca *sentry.Server, app string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(ca.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ca.Sign(&sentryv1.SignCertificateRequest{Id: app, Namespace: "default", Token: string(token),
		CertificateSigningRequest: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := sentry.ParseCertificates(resp.GetWorkloadCertificate())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func bufLogger(b *syncbuf.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// streamStatus opens a stream with dial options, reports as app, and
// returns how the server ended it (nil: it sent an order, it is served).
func streamStatus(t *testing.T, addr, app, ns string, opts ...grpc.DialOption) *status.Status {
	t.Helper()
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := placementv1.NewPlacementClient(cc).ReportDaprStatus(ctx)
	if err != nil {
		return status.Convert(err)
	}
	if err := stream.Send(&placementv1.Host{Name: "127.0.0.1:1", Id: app, Namespace: ns, Operation: placementv1.HostOperation_REPORT}); err != nil && !errors.Is(err, io.EOF) {
		return status.Convert(err)
	}
	if _, err := stream.Recv(); err != nil {
		return status.Convert(err)
	}
	return nil
}

// TestMTLS: a placement with a certificate from the CA serves sidecars
// that present theirs and checks its identity; it refuses, each with a
// reason the sidecar logs: a plaintext client, a client with no
// certificate, one with a certificate from another CA, and a report for
// another app or namespace than the certificate's. A sidecar with mTLS
// refuses a placement with another identity, and a plaintext placement.
func TestMTLS(t *testing.T) {
	ca := startCA(t)
	srvLog := &syncbuf.Buffer{}
	srv := startTLSServer(t, ca, "placement", bufLogger(srvLog))
	a := provider(t, ca, "a", "default")

	t.Run("a sidecar with mTLS gets the table and hosts actors", func(t *testing.T) {
		c, err := client.New(client.Options{Addresses: []string{srv.Addr()}, Name: "127.0.0.1:41001", AppID: "a", Namespace: "default",
			Entities: []string{"Counter"}, DialOptions: a.PlacementDialOptions()})
		if err != nil {
			t.Fatal(err)
		}
		c.Start()
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.WaitVersion(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if h, ok := c.Lookup("Counter", "1"); !ok || h != "127.0.0.1:41001" {
			t.Fatalf("lookup %q %v", h, ok)
		}
		if got := a.PlacementID().String(); got != "spiffe://cluster.local/ns/default/dapr-placement" {
			t.Fatalf("placement identity %s", got)
		}
	})

	t.Run("plaintext client", func(t *testing.T) {
		st := streamStatus(t, srv.Addr(), "a", "default", grpc.WithTransportCredentials(insecure.NewCredentials()))
		if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "requires mutual TLS") {
			t.Fatalf("got %v", st)
		}
		// The placement client logs why, once.
		c, logs := refusedClient(t, srv.Addr(), "127.0.0.1:41002", "", nil, "requires mutual TLS")
		time.Sleep(300 * time.Millisecond) // several more refused attempts
		if n := strings.Count(logs.String(), "placement refused the connection"); n != 1 {
			t.Fatalf("the refusal was logged %d times:\n%s", n, logs)
		}
		if c.Version() != 0 {
			t.Fatal("a plaintext client got a table")
		}
		if !strings.Contains(srvLog.String(), "placement refused a sidecar") {
			t.Errorf("the placement did not log the refusal:\n%s", srvLog)
		}
	})

	serverOnly := func(certs ...tls.Certificate) grpc.DialOption {
		pool := ca.RootPool()
		return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: pool, Certificates: certs, ServerName: "ignored",
			InsecureSkipVerify: true, // this client does not check the server: the server's checks are under test
		}))
	}
	t.Run("client without a certificate", func(t *testing.T) {
		if st := streamStatus(t, srv.Addr(), "a", "default", serverOnly()); !refusedHandshake(st, "certificate required") {
			t.Fatalf("got %v", st)
		}
	})
	t.Run("client with a certificate from another CA", func(t *testing.T) {
		other := startCA(t)
		if st := streamStatus(t, srv.Addr(), "a", "default", serverOnly(issue(t, other, "a"))); !refusedHandshake(st, "tls: bad certificate") {
			t.Fatalf("got %v", st)
		}
		// The same client code with this CA's certificate is served: the
		// refusal is the certificate's.
		if st := streamStatus(t, srv.Addr(), "a", "default", serverOnly(issue(t, ca, "a"))); st != nil {
			t.Fatalf("a certificate from the CA was refused: %v", st)
		}
	})
	t.Run("report for another app or namespace than the certificate's", func(t *testing.T) {
		if st := streamStatus(t, srv.Addr(), "b", "default", a.PlacementDialOptions()...); st.Code() != codes.PermissionDenied {
			t.Fatalf("another app: got %v", st)
		}
		if st := streamStatus(t, srv.Addr(), "a", "prod", a.PlacementDialOptions()...); st.Code() != codes.PermissionDenied {
			t.Fatalf("another namespace: got %v", st)
		}
		// No namespace: the certificate's (older daprd).
		if st := streamStatus(t, srv.Addr(), "a", "", a.PlacementDialOptions()...); st != nil {
			t.Fatalf("no namespace: got %v", st)
		}
	})
	t.Run("placement with another identity", func(t *testing.T) {
		fake := startTLSServer(t, ca, "sentry", nil)
		c, _ := refusedClient(t, fake.Addr(), "127.0.0.1:41003", "default", a.PlacementDialOptions(), "dapr-sentry, want spiffe://cluster.local/ns/default/dapr-placement")
		if c.Version() != 0 {
			t.Fatal("the sidecar accepted a table from a server that is not the placement")
		}
	})
	t.Run("plaintext placement", func(t *testing.T) {
		plain := startServer(t, placement.Options{})
		c, _ := refusedClient(t, plain.Addr(), "127.0.0.1:41004", "default", a.PlacementDialOptions(), "the placement serves plaintext")
		if c.Version() != 0 {
			t.Fatal("the sidecar used a plaintext placement")
		}
	})
}

// refusedHandshake reports whether st is the server's refusal of the
// client's certificate: the TLS alert (alert), or, when the server's alert
// races the client's first write under TLS 1.3 (the client sees its
// handshake done before the server checked its certificate), the
// connection the server closed.
func refusedHandshake(st *status.Status, alert string) bool {
	if st == nil || st.Code() != codes.Unavailable {
		return false
	}
	m := st.Message()
	return strings.Contains(m, alert) || strings.Contains(m, "broken pipe") || strings.Contains(m, "connection reset") || strings.Contains(m, "EOF")
}

// refusedClient starts a placement client of app "a" (or "p" without a
// namespace) at name, dialling addr with dial, and waits until its log says
// want; it is closed when the test ends.
func refusedClient(t *testing.T, addr, name, namespace string, dial []grpc.DialOption, want string) (*client.Client, *syncbuf.Buffer) {
	t.Helper()
	app := "a"
	if namespace == "" {
		app = "p"
	}
	logs := &syncbuf.Buffer{}
	c, err := client.New(client.Options{Addresses: []string{addr}, Name: name, AppID: app, Namespace: namespace,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, DialOptions: dial, Logger: bufLogger(logs)})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), want) {
			return errors.New("no refusal logged: " + logs.String())
		}
		return nil
	})
	return c, logs
}
