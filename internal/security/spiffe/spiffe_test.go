package spiffe

import (
	"net/url"
	"testing"
)

func TestParse(t *testing.T) {
	good := map[string]ID{
		"spiffe://public/ns/default/app1":          {"public", "default", "app1"},
		"spiffe://cluster.local/ns/dapr-sys/a_b.c": {"cluster.local", "dapr-sys", "a_b.c"},
	}
	for s, want := range good {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s || got.URL().String() != s {
			t.Errorf("%q round-trips to %q / %q", s, got.String(), got.URL().String())
		}
	}
	for _, s := range []string{
		"", "public/ns/default/app", "http://public/ns/default/app", "spiffe://public", "spiffe://public/ns/default",
		"spiffe://public/ns/default/app/extra", "spiffe://public/xs/default/app", "spiffe://Public/ns/default/app",
		"spiffe://public:443/ns/default/app", "spiffe://user@public/ns/default/app", "spiffe://public/ns//app",
		"spiffe://public/ns/default/a%2Fb", "spiffe://public/ns/../app", "spiffe:///ns/default/app", "spiffe://public/ns/default/app?x=1",
	} {
		if id, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", s, id)
		}
	}
}

func TestFromURIs(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if id, err := FromURIs([]*url.URL{u("spiffe://public/ns/default/app")}); err != nil || id.AppID != "app" {
		t.Fatalf("%+v, %v", id, err)
	}
	for _, uris := range [][]*url.URL{
		nil,
		{u("spiffe://public/ns/default/a"), u("spiffe://public/ns/default/b")},
		{u("https://public/ns/default/a")},
		{u("spiffe://public/ns/default/a#frag")},
		{u("spiffe://public/ns/default/a%2Fb")},
	} {
		if id, err := FromURIs(uris); err == nil {
			t.Errorf("FromURIs(%v) = %+v, want an error", uris, id)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("spiffe://public/ns/default/app1")
	f.Add("spiffe://a/ns/b/c/d")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		// Whatever parses prints back as itself and parses again the same.
		if id.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, id.String())
		}
		again, err := FromURIs([]*url.URL{id.URL()})
		if err != nil || again != id {
			t.Fatalf("%q: URL round trip %+v, %v", s, again, err)
		}
	})
}
