package security_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// seen is what the callee app received.
type seen struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Caller string `json:"caller"`
	NS     string `json:"ns"`
}

// echoApp answers every request with what it saw.
func echoApp(t *testing.T) int {
	return mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen{Method: r.Method, Path: r.URL.Path, Caller: r.Header.Get("dapr-caller-app-id"), NS: r.Header.Get("dapr-caller-namespace")})
	}))
}

// pair starts a caller "a" (no app) and a callee "b" (echoApp), both with
// mTLS from ca.
func pair(t *testing.T, ca *mechatest.CA) (a, b *mechatest.Sidecar) {
	b = mechatest.Start(t, mechatest.With(mechatest.App("b", echoApp(t), ""), mechatest.MTLS(ca)))
	a = mechatest.Start(t, mechatest.With(func(o *runtime.Options) { o.AppID = "a" }, mechatest.MTLS(ca)))
	return a, b
}

func invokeOK(t *testing.T, s *mechatest.Sidecar, app, method string) seen {
	t.Helper()
	resp := s.Do(t, http.MethodGet, "/v1.0/invoke/"+app+"/method/"+method, nil)
	if resp.Status != http.StatusOK {
		t.Fatalf("invoke %s/%s: %d %s", app, method, resp.Status, resp.Body)
	}
	var got seen
	resp.JSON(t, &got)
	return got
}

// rawClient is a gRPC client of a sidecar's internal server that presents
// cert (none when nil) and checks the server against bundle.
func rawClient(t *testing.T, addr string, cert *tls.Certificate, bundle []byte) internalv1.ServiceInvocationClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(cert, bundle))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return internalv1.NewServiceInvocationClient(cc)
}

func clientTLS(cert *tls.Certificate, bundle []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	cfg := &tls.Config{
		InsecureSkipVerify: true, // checked below: no host names in SPIFFE certificates
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func callLocal(c internalv1.ServiceInvocationClient, method string, md map[string]string) (*internalv1.InternalInvokeResponse, error) {
	req := &internalv1.InternalInvokeRequest{
		Ver:      internalv1.APIVersion_V1,
		Message:  &commonv1.InvokeRequest{Method: method, HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET}},
		Metadata: map[string]*internalv1.ListStringValue{},
	}
	for k, v := range md {
		req.Metadata[k] = &internalv1.ListStringValue{Values: []string{v}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.CallLocal(ctx, req)
}

// TestMTLSInvocation: two sidecars with certificates from the CA call each
// other over mutual TLS, over HTTP and gRPC; the callee's app sees the
// caller's app id; each sidecar holds its SPIFFE identity; the internal
// server no longer speaks plaintext.
func TestMTLSInvocation(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	a, b := pair(t, ca)
	if got := a.RT.Security().ID().String(); got != "spiffe://public/ns/default/a" {
		t.Errorf("a's identity %s", got)
	}
	if got := b.RT.Security().ID().String(); got != "spiffe://public/ns/default/b" {
		t.Errorf("b's identity %s", got)
	}
	got := invokeOK(t, a, "b", "hello")
	if got.Caller != "a" || got.NS != "default" || got.Path != "/hello" {
		t.Errorf("the app saw %+v", got)
	}
	resp, err := a.Dapr.InvokeService(context.Background(), &runtimev1.InvokeServiceRequest{
		Id: "b", Message: &commonv1.InvokeRequest{Method: "grpc", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var viaGRPC seen
	if err := json.Unmarshal(resp.GetData().GetValue(), &viaGRPC); err != nil || viaGRPC.Caller != "a" || viaGRPC.Method != http.MethodPost {
		t.Errorf("over gRPC the app saw %+v (%v)", viaGRPC, err)
	}

	// A plaintext client (what every sidecar was before) is refused.
	cc, err := grpc.NewClient(b.InternalAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := callLocal(internalv1.NewServiceInvocationClient(cc), "hello", nil); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext call: %v, want Unavailable", err)
	}
}

// TestCallerFromCertificate: the caller's app id and namespace the callee
// app sees come from the caller's certificate, not from the metadata the
// caller sent.
func TestCallerFromCertificate(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	b := mechatest.Start(t, mechatest.With(mechatest.App("b", echoApp(t), ""), mechatest.MTLS(ca)))
	cert := ca.Issue(t, "", "spoofer")
	resp, err := callLocal(rawClient(t, b.InternalAddr, &cert, ca.TrustBundle()), "who", map[string]string{"dapr-caller-app-id": "a", "dapr-caller-namespace": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var got seen
	if err := json.Unmarshal(resp.GetMessage().GetData().GetValue(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Caller != "spoofer" || got.NS != "default" {
		t.Fatalf("the app saw caller %q in %q, want spoofer in default (from the certificate)", got.Caller, got.NS)
	}
}

// expiredCert is a certificate for app from ca's own issuer that expired
// ten seconds ago.
func expiredCert(t *testing.T, ca *mechatest.CA, app string) tls.Certificate {
	t.Helper()
	issuers, err := sentry.ParseCertificates(must(os.ReadFile(filepath.Join(ca.Dir, sentry.IssuerCertFile))))
	if err != nil {
		t.Fatal(err)
	}
	issKey, err := sentry.ParsePrivateKey(must(os.ReadFile(filepath.Join(ca.Dir, sentry.IssuerKeyFile))))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(-10 * time.Second),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{{Scheme: "spiffe", Host: "public", Path: "/ns/default/" + app}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuers[0], key.Public(), issKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, issuers[0].Raw}, PrivateKey: key}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// handshake dials addr with crypto/tls, completes the handshake and reads
// the server's first bytes (its HTTP/2 settings): the error of whichever
// failed, nil when the server accepted the client. With TLS 1.3 a server
// refuses a client certificate after the client's side of the handshake
// is done, so the read is where a refusal shows.
func handshake(addr string, cfg *tls.Config) error {
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 9)
	_, err = io.ReadFull(conn, buf)
	return err
}

// TestMTLSRefusesUntrustedClients: the internal server refuses a client
// with no certificate, one from another CA, an expired one, and one
// without a SPIFFE ID, at the TLS handshake and through gRPC; a valid
// certificate gets through.
func TestMTLSRefusesUntrustedClients(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	other := mechatest.StartCA(t, 0)
	b := mechatest.Start(t, mechatest.With(mechatest.App("b", echoApp(t), ""), mechatest.MTLS(ca)))
	good := ca.Issue(t, "", "a")
	foreign := other.Issue(t, "", "a")
	expired := expiredCert(t, ca, "a")
	noID := func() tls.Certificate {
		c := expiredCert(t, ca, "a")
		// Same issuer, valid now, but only a DNS name.
		issuers, _ := sentry.ParseCertificates(must(os.ReadFile(filepath.Join(ca.Dir, sentry.IssuerCertFile))))
		issKey, _ := sentry.ParsePrivateKey(must(os.ReadFile(filepath.Join(ca.Dir, sentry.IssuerKeyFile))))
		key := c.PrivateKey.(*ecdsa.PrivateKey)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(43), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, DNSNames: []string{"a"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, issuers[0], key.Public(), issKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der, issuers[0].Raw}, PrivateKey: key}
	}()
	cases := []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"no certificate", nil, false},
		{"certificate from another CA", &foreign, false},
		{"expired certificate", &expired, false},
		{"certificate without a SPIFFE ID", &noID, false},
		{"valid certificate", &good, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := handshake(b.InternalAddr, clientTLS(c.cert, ca.TrustBundle()))
			if c.ok != (err == nil) {
				t.Errorf("TLS: %v, want ok=%v", err, c.ok)
			}
			_, err = callLocal(rawClient(t, b.InternalAddr, c.cert, ca.TrustBundle()), "hello", nil)
			if c.ok != (err == nil) {
				t.Errorf("gRPC CallLocal: %v, want ok=%v", err, c.ok)
			}
			if !c.ok && status.Code(err) != codes.Unavailable {
				t.Errorf("gRPC CallLocal: %v, want Unavailable (no connection)", err)
			}
		})
	}
}

// TestMTLSRefusesImpostorCallee: a caller that resolves an app to a
// server holding a valid certificate of another app sends it nothing and
// fails with Unauthenticated; so does a server whose certificate comes
// from another CA.
func TestMTLSRefusesImpostorCallee(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	other := mechatest.StartCA(t, 0)
	a := mechatest.Start(t, mechatest.With(func(o *runtime.Options) { o.AppID = "a" }, mechatest.MTLS(ca)))
	for _, c := range []struct {
		name string
		cert tls.Certificate
		code codes.Code
	}{
		{"another app's certificate", ca.Issue(t, "", "evil"), codes.Unauthenticated},
		{"another CA's certificate", other.Issue(t, "", "victim2"), codes.Unavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			addr := impostor(t, c.cert, &calls)
			target := "victim" + fmt.Sprint(int(c.code))
			register(t, mechatest.Registry(t), target, addr)
			resp := a.Do(t, http.MethodPost, "/v1.0/invoke/"+target+"/method/secret", "payload")
			if resp.Status != http.StatusInternalServerError || !strings.Contains(string(resp.Body), "ERR_DIRECT_INVOKE") {
				t.Errorf("invoke: %d %s", resp.Status, resp.Body)
			}
			_, err := a.Dapr.InvokeService(context.Background(), &runtimev1.InvokeServiceRequest{Id: target, Message: &commonv1.InvokeRequest{Method: "secret"}})
			if err == nil {
				t.Error("gRPC InvokeService reached the impostor")
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("the impostor received %d calls", n)
			}
		})
	}
}

// impostor serves ServiceInvocation over TLS with cert, accepting any
// client certificate, and counts the calls that reach it.
func impostor(t *testing.T, cert tls.Certificate, calls *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert})))
	internalv1.RegisterServiceInvocationServer(gs, &countingServer{calls: calls})
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

type countingServer struct {
	internalv1.UnimplementedServiceInvocationServer
	calls *atomic.Int32
}

func (s *countingServer) CallLocal(context.Context, *internalv1.InternalInvokeRequest) (*internalv1.InternalInvokeResponse, error) {
	s.calls.Add(1)
	return &internalv1.InternalInvokeResponse{Status: &internalv1.Status{Code: 200}, Message: &commonv1.InvokeResponse{}}, nil
}

func (s *countingServer) CallLocalStream(stream internalv1.ServiceInvocation_CallLocalStreamServer) error {
	m := &internalv1.InternalInvokeRequestStream{}
	if err := stream.RecvMsg(m); err != nil {
		return err
	}
	s.calls.Add(1)
	return stream.Send(&internalv1.InternalInvokeResponseStream{Response: &internalv1.InternalInvokeResponse{Status: &internalv1.Status{Code: 200}, Message: &commonv1.InvokeResponse{}}})
}

// register announces app at addr in the test's name resolution registry.
func register(t *testing.T, file, app, addr string) {
	t.Helper()
	r := sqlite.New(components.Deps{})
	if err := r.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": file}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.Register(context.Background(), nameresolution.Instance{InstanceID: app + "-impostor", AppID: app, Namespace: "default", Address: addr, PID: os.Getpid(), StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestRotationUnderTraffic: with 3-second certificates both sidecars renew
// several times while four clients keep calling through them for eight
// seconds and new connections keep being made with the caller's current
// certificate; no call fails. Every new connection after the first three
// seconds would fail if either side still presented an expired
// certificate.
func TestRotationUnderTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 8 seconds")
	}
	ca := mechatest.StartCA(t, 3*time.Second)
	a, b := pair(t, ca)
	firstA, firstB := a.RT.Security().Certificate(), b.RT.Security().Certificate()
	deadline := time.Now().Add(8 * time.Second)
	var ok, fresh atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				resp, err := http.Post(a.URL+"/v1.0/invoke/b/method/w"+fmt.Sprint(w), "text/plain", strings.NewReader("ping"))
				if err != nil {
					fail("call %d/%d: %v", w, i, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail("call %d/%d: %d %s", w, i, resp.StatusCode, body)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Go(func() {
		for time.Now().Before(deadline) {
			// A new connection with a's current certificate, checking b's
			// current one.
			cc, err := grpc.NewClient(b.InternalAddr, grpc.WithTransportCredentials(credentials.NewTLS(a.RT.Security().ClientConfig())))
			if err != nil {
				fail("dial: %v", err)
				return
			}
			if _, err := callLocal(internalv1.NewServiceInvocationClient(cc), "fresh", nil); err != nil {
				fail("new connection at %s: %v", time.Now().Format("15:04:05.000"), err)
			} else {
				fresh.Add(1)
			}
			cc.Close()
			time.Sleep(200 * time.Millisecond)
		}
	})
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d calls succeeded, failures: %q", ok.Load(), failures)
	}
	ra, rb := a.RT.Security().Rotations(), b.RT.Security().Rotations()
	t.Logf("%d calls and %d new connections, none failed; rotations: a %d, b %d", ok.Load(), fresh.Load(), ra, rb)
	if ra < 2 || rb < 2 {
		t.Errorf("rotations a=%d b=%d, want at least 2 each in 8 s of 3 s certificates", ra, rb)
	}
	if fresh.Load() < 20 || ok.Load() < 100 {
		t.Errorf("too little traffic: %d calls, %d new connections", ok.Load(), fresh.Load())
	}
	if !a.RT.Security().Certificate().NotAfter.After(firstA.NotAfter) || !b.RT.Security().Certificate().NotAfter.After(firstB.NotAfter) {
		t.Error("the certificates were not replaced")
	}
	if time.Now().Before(firstA.NotAfter) {
		t.Error("the first certificate has not even expired: the test proves nothing")
	}
}

// TestTwoRootBundle: a sidecar whose trust bundle holds two roots (a root
// rotation in progress) accepts peers whose certificates chain to either.
func TestTwoRootBundle(t *testing.T) {
	oldCA := mechatest.StartCA(t, 0)
	newCA := mechatest.StartCA(t, 0)
	bundle := append(append([]byte{}, oldCA.TrustBundle()...), newCA.TrustBundle()...)
	bundleFile := filepath.Join(t.TempDir(), "bundle.crt")
	if err := os.WriteFile(bundleFile, bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	// The CA during the rotation: both roots, signing with the new issuer.
	rot := sentry.New(sentry.Options{Dir: t.TempDir(), Address: "127.0.0.1:0", RootCertFile: bundleFile,
		IssuerCertFile: filepath.Join(newCA.Dir, sentry.IssuerCertFile), IssuerKeyFile: filepath.Join(newCA.Dir, sentry.IssuerKeyFile)})
	if err := rot.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rot.Stop(context.Background()) })
	rotCA := &mechatest.CA{Server: rot}
	// The sidecar is given the new root only (enough to verify the CA);
	// the CA hands it both roots with its certificate.
	b := mechatest.Start(t, mechatest.With(mechatest.App("b", echoApp(t), ""), func(o *runtime.Options) {
		o.Security = runtime.SecurityOptions{SentryAddress: rot.Addr(), TrustAnchors: newCA.TrustBundle(), SentryTokenFile: rot.TokenFile()}
	}))
	for name, cert := range map[string]tls.Certificate{
		"peer under the old root": oldCA.Issue(t, "", "old"),
		"peer under the new root": rotCA.Issue(t, "", "new"),
	} {
		if _, err := callLocal(rawClient(t, b.InternalAddr, &cert, bundle), "hello", nil); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	stranger := mechatest.StartCA(t, 0).Issue(t, "", "x")
	if _, err := callLocal(rawClient(t, b.InternalAddr, &stranger, bundle), "hello", nil); err == nil {
		t.Error("a peer under a third root was accepted")
	}
}

// TestNoMTLSStaysPlaintext: without a CA the internal server speaks
// plaintext gRPC on loopback, as before.
func TestNoMTLSStaysPlaintext(t *testing.T) {
	b := mechatest.Start(t, mechatest.App("b", echoApp(t), ""))
	if b.RT.Security() != nil {
		t.Fatal("mTLS on without a CA")
	}
	cc, err := grpc.NewClient(b.InternalAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := callLocal(internalv1.NewServiceInvocationClient(cc), "hello", map[string]string{"dapr-caller-app-id": "whoever"})
	if err != nil {
		t.Fatal(err)
	}
	var got seen
	json.Unmarshal(resp.GetMessage().GetData().GetValue(), &got)
	if got.Caller != "whoever" {
		t.Errorf("the app saw caller %q, want the metadata's", got.Caller)
	}
}

// TestMTLSStartFailures: a sidecar told to use mTLS does not start
// without a CA it can trust and reach.
func TestMTLSStartFailures(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	other := mechatest.StartCA(t, 0)
	cases := []struct {
		name string
		sec  runtime.SecurityOptions
		want string
	}{
		{"no trust anchors", runtime.SecurityOptions{SentryAddress: ca.Addr(), SentryTokenFile: ca.TokenFile()}, "trust anchors"},
		{"anchors of another CA", runtime.SecurityOptions{SentryAddress: ca.Addr(), TrustAnchors: other.TrustBundle(), SentryTokenFile: ca.TokenFile()}, "certificate"},
		{"wrong token", runtime.SecurityOptions{SentryAddress: ca.Addr(), TrustAnchors: ca.TrustBundle(), SentryToken: "nope"}, "token is not valid"},
		{"enabled without a CA", runtime.SecurityOptions{EnableMTLS: new(true)}, "no CA address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := runtime.Options{AppID: "x", Logger: nil, Security: c.sec, RegistryFile: filepath.Join(t.TempDir(), "r.db"), DataDir: t.TempDir()}
			o.Security.InitTimeout = time.Second
			rt, err := runtime.Start(context.Background(), o)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q lacks %q", err, c.want)
			}
		})
	}
}
