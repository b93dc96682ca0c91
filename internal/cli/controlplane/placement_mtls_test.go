package controlplane_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/cli/controlplane"
	"github.com/mecha-dev/mecha/internal/cli/sidecar"
	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/placement/client"
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/security"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
	"github.com/mecha-dev/mecha/internal/syncbuf"
)

// counterApp hosts the actor type Counter: its methods answer with the
// actor id and method.
func counterApp(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/dapr/config":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"entities":["Counter"]}`)
	case strings.HasPrefix(r.URL.Path, "/actors/Counter/") && r.Method == http.MethodPut:
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/actors/Counter/"), "/")
		if len(parts) == 3 && parts[1] == "method" {
			fmt.Fprintf(w, "%s did %s", parts[0], parts[2])
			return
		}
		http.NotFound(w, r)
	default:
		// health checks, deactivations
	}
}

// actorSidecar starts a sidecar from `mecha sidecar` flags with the home's
// placement, its log also in logs.
func actorSidecar(t *testing.T, app int, placementAddr string, logs *syncbuf.Buffer, args ...string) *mechatest.Sidecar {
	t.Helper()
	f := &sidecar.Flags{}
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(append(args, "--placement-host-address", placementAddr)); err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil {
		t.Fatal(err)
	}
	return mechatest.Start(t, func(opts *runtime.Options) {
		opts.AppID, opts.AppPort, opts.Security, opts.PlacementAddresses = o.AppID, app, o.Security, o.PlacementAddresses
		opts.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, tWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}, mechatest.InMemory)
}

// tWriter sends a sidecar's log to the test's, until the test ends.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// The local control plane serves its placement over mTLS with a
// certificate from its own CA: sidecars with mTLS (just --enable-mtls, the
// home's CA) join it, and an actor call from one to the other's actor
// succeeds; a sidecar with mTLS off is refused, and its log says why.
func TestLocalPlacementMTLS(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	l := selfhosted.LayoutAt(home)
	stop, logs := plRun(t, "--local", "--broker-port", "0", "--healthz-port", "0", "--placement-port", "0", "--sentry-port", "0")
	st := waitState(t, l, logs)
	if !strings.Contains(logs.String(), "mtls=true") {
		t.Fatalf("the placement does not serve mTLS:\n%s", logs)
	}

	app := mechatest.HTTPApp(t, http.HandlerFunc(counterApp))
	hostLogs, callerLogs, plainLogs := &syncbuf.Buffer{}, &syncbuf.Buffer{}, &syncbuf.Buffer{}
	host := actorSidecar(t, app, st.Placement, hostLogs, "--app-id", "counter", "--enable-mtls")
	caller := actorSidecar(t, 0, st.Placement, callerLogs, "--app-id", "caller", "--enable-mtls")
	if host.RT.Security() == nil || caller.RT.Security() == nil {
		t.Fatal("mTLS is off")
	}
	plEventually(t, 20*time.Second, func() error {
		r := caller.Do(t, http.MethodPost, "/v1.0/actors/Counter/c1/method/hello", nil)
		if r.Status != http.StatusOK || string(r.Body) != "c1 did hello" {
			return fmt.Errorf("actor call: %d %s", r.Status, r.Body)
		}
		return nil
	})
	for _, b := range []*syncbuf.Buffer{hostLogs, callerLogs} {
		if strings.Contains(b.String(), "placement refused") {
			t.Fatalf("a sidecar with mTLS was refused:\n%s", b)
		}
	}

	plain := actorSidecar(t, 0, st.Placement, plainLogs, "--app-id", "plain", "--enable-mtls=false")
	if plain.RT.Security() != nil {
		t.Fatal("mTLS is on with --enable-mtls=false")
	}
	plEventually(t, 10*time.Second, func() error {
		if !strings.Contains(plainLogs.String(), "requires mutual TLS") {
			return fmt.Errorf("no refusal in the sidecar log:\n%s", plainLogs)
		}
		return nil
	})
	var md struct {
		ActorRuntime struct {
			Placement string `json:"placement"`
		} `json:"actorRuntime"`
	}
	plain.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	if md.ActorRuntime.Placement != "placement: disconnected" {
		t.Fatalf("the plaintext sidecar reports %q", md.ActorRuntime.Placement)
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}
}

// writePlacementFiles writes a certificate chain and key for a control
// plane service from ca, and ca's roots, as PEM files.
func writePlacementFiles(t *testing.T, ca *sentry.Server, service string) (certFile, keyFile, anchors string) {
	t.Helper()
	get, _, err := ca.ServiceCertificate(service)
	if err != nil {
		t.Fatal(err)
	}
	c, err := get()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, anchors = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	for f, b := range map[string][]byte{certFile: chain, keyFile: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}), anchors: ca.TrustBundle()} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile, anchors
}

// A placement node without a CA serves mTLS with certificate files: a
// sidecar with a certificate from the CA that issued them gets the table;
// a certificate for another identity than the placement's is refused at
// start, as are files given without --placement-mtls.
func TestPlacementClusterTLSFiles(t *testing.T) {
	t.Setenv("MECHA_HOME", t.TempDir())
	ca := sentry.New(sentry.Options{Dir: t.TempDir(), Address: "127.0.0.1:0"})
	if err := ca.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Stop(context.Background()) })
	certFile, keyFile, anchors := writePlacementFiles(t, ca, "placement")
	port, hport := plFreePort(t), plFreePort(t)
	stop, logs := plRun(t, "--placement-port", strconv.Itoa(port), "--healthz-port", strconv.Itoa(hport),
		"--placement-tls-cert", certFile, "--placement-tls-key", keyFile, "--placement-trust-anchors", anchors)
	plEventually(t, 15*time.Second, func() error {
		if code, _, err := plHealthz(fmt.Sprintf("127.0.0.1:%d", hport)); err != nil || code != http.StatusOK {
			return fmt.Errorf("healthz %d %v\n%s", code, err, logs)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := security.Start(ctx, security.Options{SentryAddress: ca.Addr(), AppID: "a", Namespace: "default", TrustAnchors: ca.TrustBundle(), TokenFile: ca.TokenFile()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := client.New(client.Options{Addresses: []string{fmt.Sprintf("127.0.0.1:%d", port)}, Name: "127.0.0.1:41001", AppID: "a", Namespace: "default",
		Entities: []string{"Counter"}, DialOptions: p.PlacementDialOptions()})
	if err != nil {
		t.Fatal(err)
	}
	c.Start()
	defer c.Close()
	if err := c.WaitVersion(ctx, 1); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	if h, ok := c.Lookup("Counter", "1"); !ok || h != "127.0.0.1:41001" {
		t.Fatalf("lookup %q %v", h, ok)
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}

	wrongCert, wrongKey, _ := writePlacementFiles(t, ca, "sentry")
	for _, args := range [][]string{
		{"--placement-tls-cert", wrongCert, "--placement-tls-key", wrongKey, "--placement-trust-anchors", anchors},
		{"--placement-tls-cert", certFile, "--placement-tls-key", keyFile, "--placement-trust-anchors", anchors, "--placement-mtls=false"},
		{"--placement-tls-cert", certFile},
	} {
		cmd := controlplane.Command()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"--placement-port", "0", "--healthz-port", "0"}, args...))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil {
			t.Errorf("%v: started\n%s", args, out.String())
		}
	}
}
