package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/blocks/invoke"
)

// FuzzInvokeTarget: any path and header yield a target and method without
// panicking, and a method that passes NormalizeMethod has no ".." segment.
func FuzzInvokeTarget(f *testing.F) {
	for _, s := range []struct{ path, header, auth string }{
		{"/v1.0/invoke/b/method/orders/1", "", ""},
		{"/v1.0/invoke/b.ns/method/a/../../x", "", ""},
		{"/v1.0/invoke//method/x", "", ""},
		{"/v1.0/invoke/b/method", "", ""},
		{"/x/y", "b", ""},
		{"/x", "", "Basic ZGFwci1hcHAtaWQ6Yg=="},
		{"/x", "", "Basic !!"},
	} {
		f.Add(s.path, s.header, s.auth)
	}
	f.Fuzz(func(t *testing.T, p, header, auth string) {
		r := &http.Request{URL: &url.URL{Path: p}, Header: http.Header{}}
		if header != "" {
			r.Header.Set("dapr-app-id", header)
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		target, method := invokeTarget(r)
		if target == "" {
			return
		}
		m, err := invoke.NormalizeMethod(method)
		if err != nil {
			return
		}
		for seg := range strings.SplitSeq(m, "/") {
			if seg == ".." {
				t.Fatalf("path %q → method %q → %q keeps a '..' segment", p, method, m)
			}
		}
	})
}
