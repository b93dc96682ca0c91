package controlplane_test

import (
	"bytes"
	"context"
	"fmt"
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
	"github.com/mecha-dev/mecha/internal/runtime"
	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// waitState waits until the home's control plane recorded its pid.
func waitState(t *testing.T, l selfhosted.Layout, logs fmt.Stringer) selfhosted.ControlPlaneState {
	t.Helper()
	var st selfhosted.ControlPlaneState
	plEventually(t, 15*time.Second, func() error {
		var ok bool
		var err error
		st, ok, err = selfhosted.ReadControlPlane(l)
		if err != nil || !ok || st.PID == 0 {
			return fmt.Errorf("state %+v %v (log: %s)", st, err, logs)
		}
		return nil
	})
	return st
}

// sidecarFromFlags starts a sidecar from `mecha sidecar` command-line
// flags, as the CLI resolves them (the home's CA found from MECHA_HOME).
func sidecarFromFlags(t *testing.T, app int, args ...string) *mechatest.Sidecar {
	t.Helper()
	f := &sidecar.Flags{}
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	o, err := f.Options(slog.New(slog.DiscardHandler), kinds.New())
	if err != nil {
		t.Fatal(err)
	}
	return mechatest.Start(t, func(opts *runtime.Options) {
		opts.AppID, opts.AppPort, opts.Security = o.AppID, app, o.Security
	})
}

// The local control plane hosts the CA: it creates the root, issuer and
// token under <home>/data/ca (private files), records its address,
// reports it healthy and in `status`; sidecars started with just
// --enable-mtls find it through the home and call each other over mTLS; a
// restart keeps the root and the port.
func TestLocalControlPlaneHostsCA(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	l := selfhosted.LayoutAt(home)
	args := []string{"--local", "--broker-port", "0", "--healthz-port", "0", "--placement=false", "--workload-cert-ttl", "1h"}
	stop, logs := plRun(t, args...)
	st := waitState(t, l, logs)
	if !strings.HasPrefix(st.Sentry, "127.0.0.1:") {
		t.Fatalf("sentry recorded at %q", st.Sentry)
	}
	// The socket itself, not just the recorded address, is on loopback.
	_, portStr, _ := strings.Cut(st.Sentry, ":")
	port, _ := strconv.Atoi(portStr)
	if ls := listeners(t, port); len(ls) != 1 || ls[0] != "127.0.0.1" {
		t.Fatalf("the CA listens on %v, want 127.0.0.1 only", ls)
	}
	code, h, err := plHealthz(st.Healthz)
	if parts, _ := h["parts"].(map[string]any); err != nil || code != http.StatusOK || parts["sentry"] != "ok" {
		t.Fatalf("/healthz = %d %v %v", code, h, err)
	}
	dir := l.CADir()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", dir, fi, err)
	}
	for _, f := range []string{sentry.RootCertFile, sentry.IssuerCertFile, sentry.IssuerKeyFile, sentry.TokenFile} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	root, _ := os.ReadFile(filepath.Join(dir, sentry.RootCertFile))

	status := controlplane.Command()
	var out bytes.Buffer
	status.SetOut(&out)
	status.SetArgs([]string{"status"})
	if err := status.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "sentry "+st.Sentry) {
		t.Errorf("status printed %q", out.String())
	}

	app := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello " + r.Header.Get("dapr-caller-app-id")))
	}))
	callee := sidecarFromFlags(t, app, "--app-id", "callee", "--enable-mtls")
	caller := sidecarFromFlags(t, 0, "--app-id", "caller", "--enable-mtls")
	if callee.RT.Security() == nil || caller.RT.Security() == nil {
		t.Fatal("mTLS is off")
	}
	if resp := caller.Do(t, http.MethodGet, "/v1.0/invoke/callee/method/x", nil); resp.Status != http.StatusOK || string(resp.Body) != "hello caller" {
		t.Fatalf("invoke: %d %s", resp.Status, resp.Body)
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}

	stop, logs = plRun(t, args...)
	st2 := waitState(t, l, logs)
	if st2.Sentry != st.Sentry {
		t.Errorf("the CA moved from %s to %s", st.Sentry, st2.Sentry)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, sentry.RootCertFile)); !bytes.Equal(again, root) {
		t.Error("the root changed across a restart")
	}
	// A sidecar started now trusts the same root.
	late := sidecarFromFlags(t, 0, "--app-id", "late", "--sentry-address", st2.Sentry)
	if late.RT.Security() == nil {
		t.Fatal("mTLS is off with --sentry-address")
	}
	if resp := late.Do(t, http.MethodGet, "/v1.0/invoke/callee/method/x", nil); resp.Status != http.StatusOK || string(resp.Body) != "hello late" {
		t.Fatalf("invoke after the restart: %d %s", resp.Status, resp.Body)
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}
}

// The control plane refuses CA files that do not go together, and a
// trust domain that is the apps' own.
func TestControlPlaneCAFlags(t *testing.T) {
	t.Setenv("MECHA_HOME", t.TempDir())
	for _, args := range [][]string{
		{"--ca-root-cert", "/nonexistent/ca.crt"},
		{"--trust-domain", "public"},
		{"--workload-cert-ttl", "0s"},
	} {
		cmd := controlplane.Command()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"--local", "--broker-port", "0", "--healthz-port", "0", "--placement=false", "--sentry-port", "0"}, args...))
		// Were it to start, it would run until the context ends.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil {
			t.Errorf("%v: started\n%s", args, out.String())
		}
	}
}
