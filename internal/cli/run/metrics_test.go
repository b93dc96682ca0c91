package run_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/cli/run/runtest"
)

// TestTemplateMetricsPorts: every sidecar of a template gets its own free
// metrics port (daprd's 9090 cannot be shared), tells its app in
// DAPR_METRICS_PORT as the dapr CLI does, and logs it.
func TestTemplateMetricsPorts(t *testing.T) {
	runtest.Setup(t)
	path := template(t, `version: 1
apps:
- appID: one
  appDirPath: a
  command: [%[1]q, env, DAPR_METRICS_PORT]
- appID: two
  appDirPath: b
  command: [%[1]q, env, DAPR_METRICS_PORT]
`, "a", "b")
	r := startTemplate(t, path)
	if err := r.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, r.Out)
	}
	out := r.Out.String()
	ports := map[string]string{}
	for _, app := range []string{"one", "two"} {
		m := regexp.MustCompile(`\[` + app + `\] DAPR_METRICS_PORT=(\d+)\n`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s got no DAPR_METRICS_PORT:\n%s", app, out)
		}
		ports[app] = m[1]
		if !regexp.MustCompile(`\[` + app + ` sidecar\] .*msg="metrics server started".*address=\[127\.0\.0\.1:` + m[1] + `\]`).MatchString(out) {
			t.Errorf("%s's sidecar did not log its metrics port %s:\n%s", app, m[1], out)
		}
	}
	if ports["one"] == ports["two"] || ports["one"] == "9090" {
		t.Fatalf("metrics ports %v: want two different free ports", ports)
	}
	if strings.Contains(out, "metrics endpoint not started") {
		t.Fatalf("a metrics endpoint failed:\n%s", out)
	}
}
