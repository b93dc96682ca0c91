package sdk

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// startCA runs `mecha control-plane` as a placement node that also hosts
// the certificate authority, with its files in a fresh --ca-dir; it
// returns the CA's address and directory, and is stopped by PID when the
// test ends.
func startCA(t *testing.T) (addr, dir string) {
	t.Helper()
	port, healthz, placement := freePort(t), freePort(t), freePort(t)
	home := t.TempDir()
	dir = filepath.Join(home, "ca")
	cmd := exec.Command(mechaBin, "control-plane", "--placement-port", strconv.Itoa(placement), "--healthz-port", strconv.Itoa(healthz),
		"--ca-dir", dir, "--sentry-port", strconv.Itoa(port))
	cmd.Dir = home
	cmd.Env = sidecarEnv(home)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("control plane output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := pollClient.Get("http://127.0.0.1:" + strconv.Itoa(healthz) + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "127.0.0.1:" + strconv.Itoa(port), dir
			}
		}
		select {
		case <-exited:
			t.Fatalf("the control plane exited:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the control plane did not become healthy:\n%s", out.String())
		}
	}
}

// TestSDKAccessControl: sidecars with mTLS from the control plane's CA;
// the callee's Configuration allows one caller GET on /orders/* and
// nothing else, and no other caller anything. The Go SDK's InvokeMethod
// gets the app's answer where allowed and PermissionDenied where not, and
// plain HTTP gets 403 ERR_DIRECT_INVOKE.
func TestSDKAccessControl(t *testing.T) {
	caAddr, caDir := startCA(t)
	dir := t.TempDir()
	registry := filepath.Join(dir, "registry", "nameresolution.db")
	base := appIDFor(t)
	friend, stranger, callee := "friend-"+base, "stranger-"+base, "callee-"+base
	common := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: %q
`, registry)
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	plain := write("plain.yaml", common)
	acl := write("acl.yaml", common+fmt.Sprintf(`  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: %s
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders/*
        httpVerb: [GET]
        action: allow
`, friend))
	mtls := []string{"--sentry-address", caAddr, "--trust-anchors-file", filepath.Join(caDir, "ca.crt"), "--sentry-token-file", filepath.Join(caDir, "token")}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s from %s", r.Method, r.URL.Path, r.Header.Get("dapr-caller-app-id"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	startSidecar(t, sidecarConfig{AppID: callee, Args: append([]string{"--config", acl, "--app-port", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)}, mtls...)})
	f := startSidecar(t, sidecarConfig{AppID: friend, Args: append([]string{"--config", plain}, mtls...)})
	s := startSidecar(t, sidecarConfig{AppID: stranger, Args: append([]string{"--config", plain}, mtls...)})
	fc, sc := f.sdkClient(t), s.sdkClient(t)

	out, err := fc.InvokeMethod(ctxT(t), callee, "orders/1", "get")
	if err != nil {
		t.Fatalf("allowed call: %v", err)
	}
	if want := "GET /orders/1 from " + friend; string(out) != want {
		t.Fatalf("allowed call: %q, want %q", out, want)
	}
	_, err = fc.InvokeMethod(ctxT(t), callee, "orders/1", "post")
	expectCode(t, "POST on /orders/*", err, codes.PermissionDenied)
	_, err = fc.InvokeMethod(ctxT(t), callee, "admin", "get")
	expectCode(t, "GET on /admin", err, codes.PermissionDenied)
	_, err = sc.InvokeMethod(ctxT(t), callee, "orders/1", "get")
	expectCode(t, "a caller without a policy", err, codes.PermissionDenied)

	expectError(t, "HTTP from a caller without a policy", s.do(t, "GET", "/v1.0/invoke/"+callee+"/method/orders/1", nil), http.StatusForbidden, "ERR_DIRECT_INVOKE")
	expectStatus(t, "HTTP GET from the friend", f.do(t, "GET", "/v1.0/invoke/"+callee+"/method/orders/2", nil), http.StatusOK)
}
