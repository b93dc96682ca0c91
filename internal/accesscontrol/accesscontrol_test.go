package accesscontrol

import (
	"testing"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"

	"github.com/mecha-dev/mecha/internal/config"
	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// spec is a list with one policy of each kind daprd's documentation
// describes.
func spec() *config.AccessControlSpec {
	return &config.AccessControlSpec{
		DefaultAction: "deny",
		TrustDomain:   "abcd",
		Policies: []config.AppPolicySpec{
			{AppID: "app1", DefaultAction: "allow", TrustDomain: "public", Namespace: "ns1", Operations: []config.AppOperation{
				{Name: "/op1", HTTPVerb: []string{"POST", "GET"}, Action: "allow"},
				{Name: "/op2", HTTPVerb: []string{"*"}, Action: "deny"},
			}},
			{AppID: "app2", DefaultAction: "deny", TrustDomain: "domain1", Namespace: "ns2", Operations: []config.AppOperation{
				{Name: "/op3/a/*", HTTPVerb: []string{"PUT", "GET"}, Action: "allow"},
				{Name: "/op4", HTTPVerb: []string{"POST"}, Action: "allow"},
			}},
			{AppID: "app3", TrustDomain: "domain1", Namespace: "ns1", Operations: []config.AppOperation{
				{Name: "/op5", HTTPVerb: []string{"POST"}, Action: "allow"},
			}},
			{AppID: "app1", DefaultAction: "allow", TrustDomain: "public", Namespace: "ns4", Operations: []config.AppOperation{
				{Name: "/op6", HTTPVerb: []string{"*"}, Action: "allow"},
			}},
			{AppID: "app4", DefaultAction: "deny", TrustDomain: "domain1", Namespace: "ns2", Operations: []config.AppOperation{
				{Name: "/op6", Action: "allow"},
				{Name: "/op7/a/b/*", Action: "allow"},
				{Name: "/op7/a/b/c/f", Action: "allow"},
				{Name: "/op7/a/b*", Action: "allow"},
				{Name: "/op7/c/**", Action: "allow"},
			}},
		},
	}
}

func id(td, ns, app string) *spiffe.ID { return &spiffe.ID{TrustDomain: td, Namespace: ns, AppID: app} }

// TestCheck: every rule of daprd's ACL, one case each (the cases of
// daprd's own pkg/acl tests, with the outcomes daprd gives).
func TestCheck(t *testing.T) {
	httpList, err := New(spec(), true)
	if err != nil {
		t.Fatal(err)
	}
	grpcList, err := New(spec(), false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		http   bool
		caller *spiffe.ID
		method string
		verb   commonv1.HTTPExtension_Verb
		want   bool
	}{
		{"no policy for the app: global deny", true, id("public", "ns1", "appX"), "op1", commonv1.HTTPExtension_POST, false},
		{"trust domain differs: global deny", true, id("private", "ns1", "app1"), "op1", commonv1.HTTPExtension_POST, false},
		{"namespace differs: global deny", true, id("public", "abcd", "app1"), "op1", commonv1.HTTPExtension_POST, false},
		{"no identity (no mTLS): global deny", true, nil, "op1", commonv1.HTTPExtension_POST, false},
		{"operation not listed: the app's default allow", true, id("public", "ns1", "app1"), "opX", commonv1.HTTPExtension_POST, true},
		{"listed verb allowed", true, id("public", "ns1", "app1"), "op1", commonv1.HTTPExtension_GET, true},
		{"unlisted verb: the app's default", true, id("domain1", "ns2", "app2"), "op4", commonv1.HTTPExtension_PUT, false},
		{"no app default, unlisted verb: global", true, id("domain1", "ns1", "app3"), "op5", commonv1.HTTPExtension_PUT, false},
		{"verb * denies", true, id("public", "ns1", "app1"), "op2", commonv1.HTTPExtension_PUT, false},
		{"HTTP paths are case-insensitive", true, id("public", "ns1", "app1"), "Op2", commonv1.HTTPExtension_POST, false},
		{"specific verb allows", true, id("domain1", "ns2", "app2"), "op4", commonv1.HTTPExtension_POST, true},
		{"leading slash", true, id("domain1", "ns2", "app2"), "/op4", commonv1.HTTPExtension_POST, true},
		{"HTTP app without a verb: the app's default", true, id("domain1", "ns2", "app2"), "op4", commonv1.HTTPExtension_NONE, false},
		{"/op3/a/* matches /op3/a", true, id("domain1", "ns2", "app2"), "/op3/a", commonv1.HTTPExtension_PUT, true},
		{"/op3/a/* matches /op3/a/b", true, id("domain1", "ns2", "app2"), "/op3/a/b", commonv1.HTTPExtension_PUT, true},
		{"/op3/a/* does not match /op3/b/b", true, id("domain1", "ns2", "app2"), "/op3/b/b", commonv1.HTTPExtension_PUT, false},
		{"same app id, other namespace", true, id("public", "ns4", "app1"), "op6", commonv1.HTTPExtension_DELETE, true},
		{"gRPC: operation action", false, id("domain1", "ns2", "app2"), "op4", commonv1.HTTPExtension_NONE, true},
		{"gRPC names are case-sensitive", false, id("domain1", "ns2", "app2"), "/OP4", commonv1.HTTPExtension_NONE, false},
		{"gRPC: operation without verbs", false, id("domain1", "ns2", "app4"), "op6", commonv1.HTTPExtension_NONE, true},
		{"gRPC: /a/b/* covers one more segment", false, id("domain1", "ns2", "app4"), "op7/a/b/c", commonv1.HTTPExtension_NONE, true},
		{"gRPC: /a/b/* not two more", false, id("domain1", "ns2", "app4"), "op7/a/b/c/d", commonv1.HTTPExtension_NONE, false},
		{"gRPC: exact deeper name", false, id("domain1", "ns2", "app4"), "op7/a/b/c/f", commonv1.HTTPExtension_NONE, true},
		{"gRPC: glob in a segment", false, id("domain1", "ns2", "app4"), "op7/a/bc", commonv1.HTTPExtension_NONE, true},
		{"gRPC: ** covers the rest", false, id("domain1", "ns2", "app4"), "op7/c/d/e", commonv1.HTTPExtension_NONE, true},
		{"gRPC: a name covers what is below it", false, id("domain1", "ns2", "app4"), "op6/x/y", commonv1.HTTPExtension_NONE, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := grpcList
			if c.http {
				l = httpList
			}
			if got := l.Check(c.caller, c.method, c.verb).Allowed; got != c.want {
				t.Fatalf("Check(%v, %q, %v) = %v, want %v", c.caller, c.method, c.verb, got, c.want)
			}
		})
	}
}

// TestNew: defaults and refusals of the spec.
func TestNew(t *testing.T) {
	if l, err := New(nil, true); l != nil || err != nil {
		t.Fatalf("nil spec: %v, %v", l, err)
	}
	if l, err := New(&config.AccessControlSpec{}, true); l != nil || err != nil {
		t.Fatalf("empty spec: %v, %v", l, err)
	}
	l, err := New(&config.AccessControlSpec{Policies: []config.AppPolicySpec{{AppID: "a", TrustDomain: "public", Namespace: "default"}}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if l.defaultAction != deny || l.TrustDomain() != "public" {
		t.Fatalf("policies without a default: default %q, trust domain %q; want deny and public", l.defaultAction, l.TrustDomain())
	}
	// daprd: a trust domain alone (no policies key) denies; an explicit
	// empty list allows.
	if l, _ := New(&config.AccessControlSpec{TrustDomain: "td"}, true); l.Check(nil, "x", commonv1.HTTPExtension_GET).Allowed {
		t.Error("trustDomain without policies allows")
	}
	if l, _ := New(&config.AccessControlSpec{TrustDomain: "td", Policies: []config.AppPolicySpec{}}, true); !l.Check(nil, "x", commonv1.HTTPExtension_GET).Allowed {
		t.Error("an empty policies list denies")
	}
	for _, bad := range []config.AppPolicySpec{
		{TrustDomain: "public", Namespace: "default"},
		{AppID: "a", Namespace: "default"},
		{AppID: "a", TrustDomain: "public"},
	} {
		if _, err := New(&config.AccessControlSpec{DefaultAction: "allow", Policies: []config.AppPolicySpec{bad}}, true); err == nil {
			t.Errorf("policy %+v accepted", bad)
		}
	}
	var nilList *List
	if !nilList.Check(nil, "x", commonv1.HTTPExtension_GET).Allowed {
		t.Error("no list denies")
	}
}

// TestMatchQuirks: the trie's order and no-backtracking rules.
func TestMatchQuirks(t *testing.T) {
	mk := func(names ...string) *trie {
		tr := &trie{}
		for _, n := range names {
			tr.insert(n, &operation{name: n})
		}
		return tr
	}
	cases := []struct {
		names  []string
		method string
		want   string // matched operation, "" for none
	}{
		{[]string{"/a/**"}, "/a", "/a/**"},
		{[]string{"/a/**"}, "/a/b/c", "/a/**"},
		{[]string{"/a/*"}, "/a/b/c", ""},
		{[]string{"/op*"}, "/op1/x", "/op*"},
		{[]string{"/x*y"}, "/xaaay", "/x*y"},
		{[]string{"/x*y"}, "/xaaaz", ""},
		{[]string{"/a/b", "/*/c"}, "/a/c", ""}, // "/a" taken, no backtracking
		{[]string{"/a", "/a"}, "/a", "/a"},
		{[]string{"/"}, "/", "/"},
		{[]string{"/a/b"}, "/a", ""},
	}
	for _, c := range cases {
		got := ""
		if op := mk(c.names...).search(c.method); op != nil {
			got = op.name
		}
		if got != c.want {
			t.Errorf("operations %q, method %q: matched %q, want %q", c.names, c.method, got, c.want)
		}
	}
	for _, g := range []struct {
		p, s string
		want bool
	}{{"*", "", true}, {"a*", "abc", true}, {"*c", "abc", true}, {"a*d", "abcd", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false}, {"AB*.a", "ABC.a", true}, {"a", "b", false}} {
		if got := glob(g.p, g.s); got != g.want {
			t.Errorf("glob(%q, %q) = %v", g.p, g.s, got)
		}
	}
}

// FuzzCheck: no method, verb or caller makes the check panic.
func FuzzCheck(f *testing.F) {
	f.Add("op7/a/b/c", "app4", int32(0))
	f.Add("/", "app1", int32(2))
	f.Add("a//b/../*/**", "app2", int32(1))
	l, err := New(spec(), true)
	if err != nil {
		f.Fatal(err)
	}
	g, _ := New(spec(), false)
	f.Fuzz(func(t *testing.T, method, app string, verb int32) {
		c := id("domain1", "ns2", app)
		l.Check(c, method, commonv1.HTTPExtension_Verb(verb))
		g.Check(c, method, commonv1.HTTPExtension_Verb(verb))
	})
}
