//go:build k8s

package sentry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/mecha-dev/mecha/internal/sentry"
)

// fakeKube is an API server of pods and Configurations whose TokenReview
// answers from a table of tokens, recording the audiences asked for.
type fakeKube struct {
	client *fake.Clientset
	dyn    *dynfake.FakeDynamicClient

	mu        sync.Mutex
	reviews   map[string]authv1.TokenReviewStatus
	audiences [][]string
}

func newFakeKube(t *testing.T, objs ...kruntime.Object) *fakeKube {
	t.Helper()
	cfg := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "dapr.io/v1alpha1", "kind": "Configuration",
		"metadata": map[string]any{"name": "appconfig", "namespace": "prod"},
		"spec":     map[string]any{"accessControl": map[string]any{"trustDomain": "domain1"}},
	}}
	scheme := kruntime.NewScheme()
	f := &fakeKube{
		client:  fake.NewClientset(objs...),
		reviews: map[string]authv1.TokenReviewStatus{},
		dyn: dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
			map[schema.GroupVersionResource]string{{Group: "dapr.io", Version: "v1alpha1", Resource: "configurations"}: "ConfigurationList"}, cfg),
	}
	f.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, kruntime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authv1.TokenReview)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.audiences = append(f.audiences, tr.Spec.Audiences)
		out := tr.DeepCopy()
		if st, ok := f.reviews[tr.Spec.Token]; ok {
			out.Status = st
		} else {
			out.Status = authv1.TokenReviewStatus{Authenticated: false}
		}
		return true, out, nil
	})
	return f
}

// token makes a service-account token: a JWT whose claims name the pod
// (its signature is the fake API server's business), reviewed as user
// system:serviceaccount:<ns>:<sa>, with the pod in the review's extra
// when inExtra.
func (f *fakeKube) token(ns, sa, pod, podUID string, inExtra bool) string {
	claims, _ := json.Marshal(map[string]any{"kubernetes.io": map[string]any{"namespace": ns, "pod": map[string]any{"name": pod}}})
	tok := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(claims) + ".c2ln" + ns + sa + pod
	st := authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{Username: "system:serviceaccount:" + ns + ":" + sa}}
	if inExtra {
		st.User.Extra = map[string]authv1.ExtraValue{
			"authentication.kubernetes.io/pod-name": {pod},
			"authentication.kubernetes.io/pod-uid":  {podUID},
		}
	}
	f.mu.Lock()
	f.reviews[tok] = st
	f.mu.Unlock()
	return tok
}

func pod(ns, name, sa, uid string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Annotations: ann},
		Spec:       corev1.PodSpec{ServiceAccountName: sa},
	}
}

// TestKubernetesValidator: with the KUBERNETES validator, the identity is
// that of the pod the reviewed token was issued for: its namespace, its
// dapr.io/app-id (else its name), its Configuration's trust domain; every
// mismatch is PermissionDenied as in Dapr's sentry, and the self-hosted
// token keeps working beside it.
func TestKubernetesValidator(t *testing.T) {
	k := newFakeKube(t,
		pod("prod", "orders-7f9", "orders-sa", "uid-1", map[string]string{"dapr.io/app-id": "orders"}),
		pod("prod", "billing-0", "billing-sa", "uid-2", nil),
		pod("prod", "cfg-0", "cfg-sa", "uid-3", map[string]string{"dapr.io/app-id": "shipping", "dapr.io/config": "appconfig"}),
		pod("prod", "nocfg-0", "nocfg-sa", "uid-4", map[string]string{"dapr.io/app-id": "nocfg", "dapr.io/config": "missing"}),
		pod("default", "dapr-placement-0", "placement-sa", "uid-5", map[string]string{"dapr.io/control-plane": "placement"}),
		pod("prod", "fake-placement-0", "fp-sa", "uid-6", map[string]string{"dapr.io/control-plane": "placement"}),
	)
	s := startCA(t, sentry.Options{Dir: t.TempDir(), TrustDomain: "cp.example",
		Kubernetes: &sentry.KubernetesOptions{Client: k.client, Dynamic: k.dyn}})
	c := client(t, s.Addr(), s.TrustBundle(), "spiffe://cp.example/ns/default/dapr-sentry")
	_, csr := newCSR(t, nil)
	kube := func(id, ns, token string) *sentryv1.SignCertificateRequest {
		return &sentryv1.SignCertificateRequest{Id: id, Namespace: ns, Token: token, CertificateSigningRequest: csr,
			TokenValidator: sentryv1.SignCertificateRequest_KUBERNETES, TrustDomain: "ignored.example"}
	}
	orders := k.token("prod", "orders-sa", "orders-7f9", "uid-1", true)

	accepted := []struct {
		name, want string
		req        *sentryv1.SignCertificateRequest
	}{
		{"app id annotation, pod in the review", "spiffe://public/ns/prod/orders", kube("orders", "prod", orders)},
		{"no annotation: the pod name, pod only in the token's claims", "spiffe://public/ns/prod/billing-0",
			kube("billing-0", "prod", k.token("prod", "billing-sa", "billing-0", "", false))},
		{"the Configuration's trust domain", "spiffe://domain1/ns/prod/shipping",
			kube("shipping", "prod", k.token("prod", "cfg-sa", "cfg-0", "uid-3", true))},
		{"control plane pod in the control plane namespace", "spiffe://cp.example/ns/default/dapr-placement",
			kube("dapr-placement", "default", k.token("default", "placement-sa", "dapr-placement-0", "uid-5", true))},
	}
	for _, tc := range accepted {
		t.Run("accepted: "+tc.name, func(t *testing.T) {
			resp, err := c.SignCertificate(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			chain := parseChain(t, resp.GetWorkloadCertificate())
			if got := chain[0].URIs[0].String(); got != tc.want {
				t.Fatalf("issued %s, want %s", got, tc.want)
			}
			if err := verify(chain, s.TrustBundle(), chain[0].NotBefore.Add(1)); err != nil {
				t.Fatal(err)
			}
		})
	}
	k.mu.Lock()
	for _, a := range k.audiences {
		if !slices.Equal(a, []string{"dapr.io/sentry", "spiffe://cp.example/ns/default/dapr-sentry"}) {
			t.Errorf("token reviewed for audiences %q, want Dapr's", a)
		}
	}
	k.mu.Unlock()

	k.mu.Lock()
	k.reviews["expired"] = authv1.TokenReviewStatus{Error: "token has expired"}
	k.reviews["user"] = authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{Username: "alice"}}
	k.reviews["node"] = authv1.TokenReviewStatus{Authenticated: true, User: authv1.UserInfo{Username: "system:node:node-1:x"}}
	k.mu.Unlock()
	refused := []struct {
		name string
		req  *sentryv1.SignCertificateRequest
		code codes.Code
	}{
		{"wrong namespace", kube("orders", "staging", orders), codes.PermissionDenied},
		{"unauthenticated token", kube("orders", "prod", "not-a-known-token"), codes.PermissionDenied},
		{"review error", kube("orders", "prod", "expired"), codes.PermissionDenied},
		{"no token", kube("orders", "prod", ""), codes.PermissionDenied},
		{"not a service account", kube("orders", "prod", "user"), codes.PermissionDenied},
		{"not a service account, four parts", kube("orders", "prod", "node"), codes.PermissionDenied},
		{"another app id than the pod's", kube("billing", "prod", orders), codes.PermissionDenied},
		{"the pod name when the pod has an app id", kube("orders-7f9", "prod", orders), codes.PermissionDenied},
		{"token of another service account for the pod", kube("orders", "prod", k.token("prod", "billing-sa", "orders-7f9", "uid-1", true)), codes.PermissionDenied},
		{"token bound to an earlier pod of the name", kube("orders", "prod", k.token("prod", "orders-sa", "orders-7f9", "uid-old", true)), codes.PermissionDenied},
		{"pod that does not exist", kube("gone", "prod", k.token("prod", "gone-sa", "gone-0", "uid-9", true)), codes.PermissionDenied},
		{"token not bound to a pod", kube("orders", "prod", k.token("prod", "orders-sa", "", "", false)), codes.PermissionDenied},
		{"Configuration missing", kube("nocfg", "prod", k.token("prod", "nocfg-sa", "nocfg-0", "uid-4", true)), codes.PermissionDenied},
		{"control plane pod outside the control plane namespace", kube("dapr-placement", "prod", k.token("prod", "fp-sa", "fake-placement-0", "uid-6", true)), codes.PermissionDenied},
		{"control plane pod asking for an app id", kube("orders", "default", k.token("default", "placement-sa", "dapr-placement-0", "uid-5", true)), codes.PermissionDenied},
		{"shared token with the Kubernetes validator", kube("orders", "prod", readToken(t, s)), codes.PermissionDenied},
		{"no app id", kube("", "prod", orders), codes.InvalidArgument},
	}
	for _, tc := range refused {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			_, err := c.SignCertificate(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			if tok := tc.req.GetToken(); len(tok) > 12 && strings.Contains(status.Convert(err).Message(), tok) {
				t.Fatal("the error message contains the token")
			}
		})
	}

	t.Run("the self-hosted token still works", func(t *testing.T) {
		resp, err := c.SignCertificate(context.Background(), &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: readToken(t, s), CertificateSigningRequest: csr})
		if err != nil {
			t.Fatal(err)
		}
		if got := parseChain(t, resp.GetWorkloadCertificate())[0].URIs[0].String(); got != "spiffe://public/ns/default/app1" {
			t.Fatalf("issued %s", got)
		}
	})
}

// TestKubernetesValidatorOff: without Kubernetes access the validator is
// not enabled (Dapr's answer), whatever the token.
func TestKubernetesValidatorOff(t *testing.T) {
	s := startCA(t, sentry.Options{Dir: t.TempDir(), TrustDomain: "cp.example"})
	c := client(t, s.Addr(), s.TrustBundle(), "spiffe://cp.example/ns/default/dapr-sentry")
	_, csr := newCSR(t, nil)
	_, err := c.SignCertificate(context.Background(), &sentryv1.SignCertificateRequest{Id: "app1", Namespace: "default", Token: readToken(t, s),
		CertificateSigningRequest: csr, TokenValidator: sentryv1.SignCertificateRequest_KUBERNETES})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "not enabled") {
		t.Fatalf("got %v", err)
	}
}
