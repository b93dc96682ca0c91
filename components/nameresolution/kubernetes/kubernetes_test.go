package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/nameresolutiontest"
)

func md(kv ...string) components.Metadata {
	p := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return components.Metadata{Name: "nr", Type: "nameresolution.kubernetes", Properties: p}
}

func TestConformance(t *testing.T) {
	nameresolutiontest.Run(t, nameresolutiontest.Options{
		New:      func(testing.TB) nameresolution.Resolver { return New(components.Deps{}) },
		Metadata: md("clusterDomain", "example.internal"),
		Derive: func(req nameresolution.ResolveRequest) []string {
			return []string{fmt.Sprintf("%s-dapr.%s.svc.example.internal:50002", req.ID, req.Namespace)}
		},
	})
}

func TestResolve(t *testing.T) {
	cases := []struct {
		name string
		md   components.Metadata
		self string // namespace given to Register; "-" skips Register
		req  nameresolution.ResolveRequest
		want string
	}{
		{"default form", md(), "-", nameresolution.ResolveRequest{ID: "orders", Namespace: "default"}, "orders-dapr.default.svc.cluster.local:50002"},
		{"request namespace", md(), "shop", nameresolution.ResolveRequest{ID: "orders", Namespace: "production"}, "orders-dapr.production.svc.cluster.local:50002"},
		{"sidecar namespace when the request has none", md(), "shop", nameresolution.ResolveRequest{ID: "orders"}, "orders-dapr.shop.svc.cluster.local:50002"},
		{"default namespace last", md(), "-", nameresolution.ResolveRequest{ID: "orders"}, "orders-dapr.default.svc.cluster.local:50002"},
		{"cluster domain", md("clusterDomain", "corp.example"), "-", nameresolution.ResolveRequest{ID: "a", Namespace: "ns"}, "a-dapr.ns.svc.corp.example:50002"},
		{"cluster domain with a final dot, case-insensitive key", md("ClusterDomain", "corp.example."), "-", nameresolution.ResolveRequest{ID: "a", Namespace: "ns"}, "a-dapr.ns.svc.corp.example:50002"},
		{"empty cluster domain is the default", md("clusterDomain", ""), "-", nameresolution.ResolveRequest{ID: "a", Namespace: "ns"}, "a-dapr.ns.svc.cluster.local:50002"},
		{"template as in Dapr's docs", md("template", "{{.ID}}-{{.Namespace}}.internal:{{.Port}}"), "-", nameresolution.ResolveRequest{ID: "a", Namespace: "eu"}, "a-eu.internal:50002"},
		{"template with functions and a fixed port", md("template", `{{printf "%s.%s" .ID .Namespace | printf "%s.mesh"}}:7000`), "-", nameresolution.ResolveRequest{ID: "a", Namespace: "eu"}, "a.eu.mesh:7000"},
		{"template gets the sidecar namespace", md("template", "{{.ID}}.{{.Namespace}}:{{.Port}}"), "shop", nameresolution.ResolveRequest{ID: "a"}, "a.shop:50002"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := New(components.Deps{})
			if err := r.Init(context.Background(), c.md); err != nil {
				t.Fatalf("Init: %v", err)
			}
			if c.self != "-" {
				if err := r.Register(context.Background(), nameresolution.Instance{AppID: "me", Namespace: c.self, Address: "10.0.0.1:50002"}); err != nil {
					t.Fatalf("Register: %v", err)
				}
			}
			got, err := r.Resolve(context.Background(), c.req)
			if err != nil || len(got) != 1 || got[0] != c.want {
				t.Fatalf("Resolve(%+v) = %v, %v; want [%s]", c.req, got, err, c.want)
			}
		})
	}
}

func TestInitErrors(t *testing.T) {
	cases := []struct {
		name    string
		md      components.Metadata
		wantErr string
	}{
		{"template and clusterDomain", md("template", "{{.ID}}:1", "clusterDomain", "x.local"), "mutually exclusive"},
		{"template syntax", md("template", "{{.ID"), `metadata "template"`},
		{"unknown field", md("template", "{{.AppID}}:{{.Port}}"), "can't evaluate field AppID"},
		{"unknown function", md("template", "{{upper .ID}}:1"), `function "upper" not defined`},
		{"no port", md("template", "{{.ID}}.svc"), "not host:port"},
		{"port not a number", md("template", "{{.ID}}:{{.Namespace}}"), "port number"},
		{"empty host", md("template", ":{{.Port}}"), "port number"},
		{"data key", md("template", "{{.ID}}-{{.Data.region}}.internal:{{.Port}}"), "{{.Data.region}}: resolve requests carry no data"},
		{"data through index", md("template", `{{index .Data "zone"}}:1`), "{{.Data.<key>}}"},
		{"data inside with", md("template", `{{with .ID}}{{$.Data.zone}}{{end}}:1`), "{{.Data.zone}}"},
		{"bad domain", md("clusterDomain", "cluster_local"), `metadata "clusterDomain"`},
		{"domain with an empty label", md("clusterDomain", "a..b"), "not a DNS domain"},
		{"domain label with a leading hyphen", md("clusterDomain", "-a.b"), "not a DNS domain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := New(components.Deps{}).Init(context.Background(), c.md)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Init error = %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	r := New(components.Deps{})
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "a"}); err == nil || !strings.Contains(err.Error(), "not initialised") {
		t.Fatalf("Resolve before Init: %v", err)
	}
	if err := r.Init(context.Background(), md()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		req     nameresolution.ResolveRequest
		wantErr string
	}{
		{nameresolution.ResolveRequest{}, "empty app id"},
		{nameresolution.ResolveRequest{ID: "under_score", Namespace: "default"}, "cannot name a Kubernetes service"},
		{nameresolution.ResolveRequest{ID: strings.Repeat("a", 59), Namespace: "default"}, "cannot name a Kubernetes service"},
		{nameresolution.ResolveRequest{ID: "ok", Namespace: "a.b"}, "not a DNS label"},
	}
	for _, c := range cases {
		if got, err := r.Resolve(context.Background(), c.req); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("Resolve(%+v) = %v, %v; want an error containing %q", c.req, got, err, c.wantErr)
		}
	}
	// 58 characters + "-dapr" is the longest label.
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: strings.Repeat("a", 58), Namespace: "default"}); err != nil {
		t.Errorf("Resolve(58-character id): %v", err)
	}
	// A template that renders something else than host:port for a real id.
	tr := New(components.Deps{})
	if err := tr.Init(context.Background(), md("template", `{{if eq .ID "app"}}app:1{{else}}{{.ID}}{{end}}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := tr.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "orders", Namespace: "default"}); err == nil || !strings.Contains(err.Error(), `rendered "orders", not host:port`) {
		t.Fatalf("Resolve through a bad template = %v, %v", got, err)
	}
}
