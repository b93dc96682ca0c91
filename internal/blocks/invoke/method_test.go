package invoke

import (
	"errors"
	"testing"
)

func TestNormalizeMethod(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{"orders/42", "orders/42", false},
		{"", "", false},
		{"a//b/", "a/b", false},
		{"/lead", "/lead", false}, // as daprd: path.Clean keeps it
		{"a/./b/../c", "a/c", false},
		{"../../etc/passwd", "etc/passwd", false},
		{"..", "", false},
		{".", "", false},
		{"a b/é", "a b/é", false},
		{"a?b", "", true},
		{"a#b", "", true},
		{"a\x00b", "", true},
		{"a\nb", "", true},
		{"a\x7fb", "", true},
	}
	for _, c := range cases {
		got, err := NormalizeMethod(c.in)
		if c.bad {
			if !errors.Is(err, ErrInvalidMethod) {
				t.Errorf("NormalizeMethod(%q) = %q, %v; want ErrInvalidMethod", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("NormalizeMethod(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	b := New(Options{AppID: "me", Namespace: "default"})
	cases := []struct {
		in, id, ns string
		bad        bool
	}{
		{"orders", "orders", "default", false},
		{"orders.prod", "orders", "prod", false},
		{"", "", "", true},
		{"a.b.c", "", "", true},
		{".x", "", "", true},
		{"x.", "", "", true},
	}
	for _, c := range cases {
		id, ns, err := b.parseTarget(c.in)
		if (err != nil) != c.bad || id != c.id || ns != c.ns {
			t.Errorf("parseTarget(%q) = %q, %q, %v", c.in, id, ns, err)
		}
	}
}

func BenchmarkNormalizeMethod(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NormalizeMethod("orders/42/items"); err != nil {
			b.Fatal(err)
		}
	}
}
