//go:build k8s

package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	authv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/mecha-dev/mecha/internal/selfhosted"
	"github.com/mecha-dev/mecha/internal/sentry"
)

// fakeAPIServer answers TokenReviews (one valid token, for pod orders-0's
// service account) and serves that pod.
func fakeAPIServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /apis/authentication.k8s.io/v1/tokenreviews", func(w http.ResponseWriter, r *http.Request) {
		// client-go sends protobuf or JSON; the universal deserializer
		// reads both.
		body, _ := io.ReadAll(r.Body)
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		tr, ok := obj.(*authv1.TokenReview)
		if err != nil || !ok {
			t.Logf("token review of %s: %v", r.Header.Get("Content-Type"), err)
			http.Error(w, "bad token review", http.StatusBadRequest)
			return
		}
		if tr.Spec.Token == "orders-token" {
			tr.Status = authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{
				Username: "system:serviceaccount:prod:orders-sa",
				Extra:    map[string]authv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"orders-0"}},
			}}
		}
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(tr)
	})
	mux.HandleFunc("GET /api/v1/namespaces/prod/pods/orders-0", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "orders-0", "namespace": "prod", "annotations": map[string]string{"dapr.io/app-id": "orders"}},
			"spec":     map[string]any{"serviceAccountName": "orders-sa"},
		})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// With --kubeconfig, the control plane's CA accepts Dapr's KUBERNETES
// identity proof, reviewed by that API server: the pod's token gets the
// pod's identity, and a request for another app id is refused.
func TestControlPlaneKubernetesValidator(t *testing.T) {
	home := t.TempDir()
	t.Setenv("MECHA_HOME", home)
	api := fakeAPIServer(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: `+api.URL+`
contexts:
- name: fake
  context:
    cluster: fake
    user: sentry
current-context: fake
users:
- name: sentry
  user:
    token: sentry-token
`), 0o600); err != nil {
		t.Fatal(err)
	}
	stop, logs := plRun(t, "--local", "--broker-port", "0", "--healthz-port", "0", "--placement=false", "--sentry-port", "0", "--kubeconfig", kubeconfig)
	st := waitState(t, selfhosted.LayoutAt(home), logs)

	cc, err := grpc.NewClient(st.Sentry, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		InsecureSkipVerify: true, // the CA's identity is not under test here
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ca := sentryv1.NewCAClient(cc)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	req := func(id, token string) *sentryv1.SignCertificateRequest {
		return &sentryv1.SignCertificateRequest{Id: id, Namespace: "prod", Token: token, CertificateSigningRequest: csr,
			TokenValidator: sentryv1.SignCertificateRequest_KUBERNETES}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ca.SignCertificate(ctx, req("orders", "orders-token"))
	if err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	chain, err := sentry.ParseCertificates(resp.GetWorkloadCertificate())
	if err != nil {
		t.Fatal(err)
	}
	if got := chain[0].URIs[0].String(); got != "spiffe://public/ns/prod/orders" {
		t.Fatalf("issued %s", got)
	}
	for _, r := range []*sentryv1.SignCertificateRequest{req("billing", "orders-token"), req("orders", "stolen")} {
		if _, err := ca.SignCertificate(ctx, r); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s with token %q: %v, want PermissionDenied", r.GetId(), r.GetToken(), err)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("control plane: %v\n%s", err, logs)
	}
}
