package security_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// BenchmarkInvoke measures one HTTP service invocation through two
// in-process sidecars (caller → callee → app and back), with the internal
// hop in plaintext and with mTLS, on a warm connection: the cost of
// encrypting the sidecar-to-sidecar hop.
//
//	go test -run XXX -bench Invoke -benchtime 3000x ./internal/security/
func BenchmarkInvoke(b *testing.B) {
	app := mechatest.HTTPApp(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	}))
	for _, mode := range []string{"plaintext", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			var sec func(*runtime.Options)
			if mode == "mtls" {
				sec = mechatest.MTLS(mechatest.StartCA(b, 0))
			}
			mechatest.Start(b, mechatest.With(mechatest.App("callee-"+mode, app, ""), sec))
			caller := mechatest.Start(b, mechatest.With(func(o *runtime.Options) { o.AppID = "caller-" + mode }, sec))
			url := caller.URL + "/v1.0/invoke/callee-" + mode + "/method/x"
			body := strings.Repeat("x", 1024)
			c := &http.Client{}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, err := c.Post(url, "text/plain", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
