package accesscontrol_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// config writes a Configuration with spec (indented under spec:).
func config(t *testing.T, spec string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: acl\nspec:\n" + spec
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func withConfig(file string) func(*runtime.Options) {
	return func(o *runtime.Options) { o.ConfigFiles = append(o.ConfigFiles, file) }
}

func caller(id string) func(*runtime.Options) {
	return func(o *runtime.Options) { o.AppID = id }
}

// okApp answers 200 "ok" to everything.
func okApp(t *testing.T) int {
	return mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
}

const httpPolicies = `  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders/*
        httpVerb: [GET]
        action: allow
      - name: /op*
        httpVerb: ["*"]
        action: allow
      - name: /admin/**
        httpVerb: ["*"]
        action: deny
    - appId: c
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /admin/**
        httpVerb: [POST, DELETE]
        action: deny
    - appId: e
      defaultAction: allow
      trustDomain: public
      namespace: default
`

// TestAccessControlHTTPApp: the callee's policies allow and deny by
// calling app (from its certificate), path glob and verb, through the
// HTTP invoke API and gRPC InvokeService of the calling sidecar; refusals
// are 403 ERR_DIRECT_INVOKE and PermissionDenied.
func TestAccessControlHTTPApp(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	mechatest.Start(t, mechatest.With(mechatest.App("b", okApp(t), ""), mechatest.MTLS(ca), withConfig(config(t, httpPolicies))))
	a := mechatest.Start(t, mechatest.With(caller("a"), mechatest.MTLS(ca)))
	c := mechatest.Start(t, mechatest.With(caller("c"), mechatest.MTLS(ca)))
	d := mechatest.Start(t, mechatest.With(caller("d"), mechatest.MTLS(ca)))
	// e's own Configuration puts it in trust domain "other": b's policy
	// for e in "public" does not apply to it.
	e := mechatest.Start(t, mechatest.With(caller("e"), mechatest.MTLS(ca), withConfig(config(t, "  accessControl:\n    trustDomain: other\n    defaultAction: allow\n"))))
	if got := e.RT.Security().ID().String(); got != "spiffe://other/ns/default/e" {
		t.Fatalf("e's identity %s", got)
	}
	cases := []struct {
		name   string
		from   *mechatest.Sidecar
		verb   string
		method string
		ok     bool
	}{
		{"listed verb on a one-segment glob", a, http.MethodGet, "orders/1", true},
		{"HTTP paths ignore case", a, http.MethodGet, "ORDERS/1", true},
		{"verb not listed: the app's default deny", a, http.MethodPost, "orders/1", false},
		{"two segments under /orders/*", a, http.MethodGet, "orders/1/items", false},
		{"glob in a segment, any verb", a, http.MethodPut, "op42", true},
		{"deny under **", a, http.MethodGet, "admin/x/y", false},
		{"not listed: the app's default deny", a, http.MethodGet, "other", false},
		{"app default allow", c, http.MethodGet, "anything", true},
		{"unlisted verb under a deny rule: app default allow", c, http.MethodGet, "admin/users", true},
		{"listed verb denied", c, http.MethodDelete, "admin/users", false},
		{"no policy for the app: global deny", d, http.MethodGet, "orders/1", false},
		{"policy in another trust domain: global deny", e, http.MethodGet, "orders/1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.from.Do(t, tc.verb, "/v1.0/invoke/b/method/"+tc.method, nil)
			if tc.ok {
				if resp.Status != http.StatusOK || string(resp.Body) != "ok" {
					t.Fatalf("HTTP: %d %s, want 200", resp.Status, resp.Body)
				}
			} else if resp.Status != http.StatusForbidden || resp.ErrorCode() != "ERR_DIRECT_INVOKE" || !strings.Contains(string(resp.Body), "access control policy has denied access") {
				t.Fatalf("HTTP: %d %s, want 403 ERR_DIRECT_INVOKE", resp.Status, resp.Body)
			}
			verb := commonv1.HTTPExtension_Verb(commonv1.HTTPExtension_Verb_value[tc.verb])
			_, err := tc.from.Dapr.InvokeService(context.Background(), &runtimev1.InvokeServiceRequest{
				Id: "b", Message: &commonv1.InvokeRequest{Method: tc.method, HttpExtension: &commonv1.HTTPExtension{Verb: verb}},
			})
			if tc.ok && err != nil {
				t.Fatalf("gRPC: %v", err)
			}
			if !tc.ok && status.Code(err) != codes.PermissionDenied {
				t.Fatalf("gRPC: %v, want PermissionDenied", err)
			}
		})
	}
}

// TestAccessControlNormalisesFirst: a method that climbs out of an
// allowed path with ".." is checked as the path the app would get.
func TestAccessControlNormalisesFirst(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	b := mechatest.Start(t, mechatest.With(mechatest.App("b", okApp(t), ""), mechatest.MTLS(ca), withConfig(config(t, httpPolicies))))
	cert := ca.Issue(t, "", "a")
	cc, err := grpc.NewClient(b.InternalAddr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, ca, cert))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	call := func(method string) error {
		_, err := internalv1.NewServiceInvocationClient(cc).CallLocal(context.Background(), &internalv1.InternalInvokeRequest{
			Ver:      internalv1.APIVersion_V1,
			Message:  &commonv1.InvokeRequest{Method: method, HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET}},
			Metadata: map[string]*internalv1.ListStringValue{"dapr-caller-app-id": {Values: []string{"a"}}},
		})
		return err
	}
	if err := call("orders/1"); err != nil {
		t.Fatalf("allowed method: %v", err)
	}
	for _, m := range []string{"orders/../admin/x", "orders/1/../../admin/x", "./admin//x"} {
		if err := call(m); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%q: %v, want PermissionDenied", m, err)
		}
	}
}

// clientTLS presents cert and checks the server against ca's bundle.
func clientTLS(t *testing.T, ca *mechatest.CA, cert tls.Certificate) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.TrustBundle())
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // checked below: SPIFFE certificates have no host names
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		},
	}
}

// grpcApp is an AppCallback app that answers OnInvoke with the method.
type grpcApp struct {
	runtimev1.UnimplementedAppCallbackServer
}

func (grpcApp) OnInvoke(_ context.Context, in *commonv1.InvokeRequest) (*commonv1.InvokeResponse, error) {
	return &commonv1.InvokeResponse{Data: &anypb.Any{Value: []byte(in.GetMethod())}, ContentType: "text/plain"}, nil
}

// TestAccessControlGRPCApp: for a gRPC app, operations are the method
// names (case-sensitive, no verbs), both for InvokeService and for calls
// through the transparent gRPC proxy, which are checked under their full
// gRPC method name.
func TestAccessControlGRPCApp(t *testing.T) {
	ca := mechatest.StartCA(t, 0)
	cfg := config(t, `  accessControl:
    defaultAction: deny
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: allowed
        action: allow
      - name: /dapr.proto.runtime.v1.AppCallback/OnInvoke
        action: allow
    - appId: c
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /dapr.proto.runtime.v1.AppCallback/*
        action: deny
`)
	mechatest.Start(t, mechatest.With(mechatest.App("g", mechatest.GRPCApp(t, grpcApp{}), "grpc"), mechatest.MTLS(ca), withConfig(cfg)))
	a := mechatest.Start(t, mechatest.With(caller("a"), mechatest.MTLS(ca)))
	c := mechatest.Start(t, mechatest.With(caller("c"), mechatest.MTLS(ca)))
	invoke := func(s *mechatest.Sidecar, method string) error {
		_, err := s.Dapr.InvokeService(context.Background(), &runtimev1.InvokeServiceRequest{Id: "g", Message: &commonv1.InvokeRequest{Method: method}})
		return err
	}
	if err := invoke(a, "allowed"); err != nil {
		t.Errorf("a allowed: %v", err)
	}
	if err := invoke(a, "Allowed"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a Allowed (other case): %v, want PermissionDenied", err)
	}
	if err := invoke(a, "other"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a other: %v, want PermissionDenied", err)
	}
	if err := invoke(c, "other"); err != nil {
		t.Errorf("c other: %v", err)
	}
	if resp := a.Do(t, http.MethodPost, "/v1.0/invoke/g/method/other", nil); resp.Status != http.StatusForbidden {
		t.Errorf("HTTP a other: %d %s, want 403", resp.Status, resp.Body)
	}

	proxied := func(s *mechatest.Sidecar) error {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "dapr-app-id", "g"), 5*time.Second)
		defer cancel()
		resp, err := runtimev1.NewAppCallbackClient(s.Conn).OnInvoke(ctx, &commonv1.InvokeRequest{Method: "via-proxy"})
		if err == nil && string(resp.GetData().GetValue()) != "via-proxy" {
			t.Errorf("proxied answer %q", resp.GetData().GetValue())
		}
		return err
	}
	if err := proxied(a); err != nil {
		t.Errorf("proxied from a: %v", err)
	}
	if err := proxied(c); status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "spiffe://public/ns/default/c") {
		t.Errorf("proxied from c: %v, want PermissionDenied naming c", err)
	}
}

// TestAccessControlWithoutMTLS: without mTLS there is no caller identity,
// so only the global default applies, as in daprd: app policies allow
// nothing, and do not deny either.
func TestAccessControlWithoutMTLS(t *testing.T) {
	deny := config(t, "  accessControl:\n    defaultAction: deny\n    policies:\n    - appId: a\n      defaultAction: allow\n      trustDomain: public\n      namespace: default\n")
	allow := config(t, "  accessControl:\n    defaultAction: allow\n    policies:\n    - appId: a\n      defaultAction: deny\n      trustDomain: public\n      namespace: default\n")
	mechatest.Start(t, mechatest.With(mechatest.App("denier", okApp(t), ""), withConfig(deny)))
	mechatest.Start(t, mechatest.With(mechatest.App("allower", okApp(t), ""), withConfig(allow)))
	a := mechatest.Start(t, caller("a"))
	if resp := a.Do(t, http.MethodGet, "/v1.0/invoke/denier/method/x", nil); resp.Status != http.StatusForbidden || resp.ErrorCode() != "ERR_DIRECT_INVOKE" {
		t.Errorf("global deny: %d %s, want 403", resp.Status, resp.Body)
	}
	if resp := a.Do(t, http.MethodGet, "/v1.0/invoke/allower/method/x", nil); resp.Status != http.StatusOK {
		t.Errorf("global allow: %d %s, want 200", resp.Status, resp.Body)
	}
	if a.RT.Security() != nil {
		t.Error("mTLS is on")
	}
}
