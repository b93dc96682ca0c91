package runfile_test

import (
	"strings"
	"testing"
)

// TestMetricsPort: an app's metricsPort is read (the dapr CLI's field),
// checked like the other ports, and left 0 (a free port) when absent.
func TestMetricsPort(t *testing.T) {
	root := tree(t, "a/", "b/")
	tpl, err := parse(t, root, "version: 1\napps:\n- {appDirPath: a, metricsPort: 9191, command: [x]}\n- {appDirPath: b, command: [x]}\n")
	if err != nil {
		t.Fatal(err)
	}
	if a, b := tpl.Apps[0], tpl.Apps[1]; a.MetricsPort != 9191 || b.MetricsPort != 0 || len(a.NoEffect) != 0 {
		t.Fatalf("metrics ports %d, %d (no effect: %v); want 9191, 0 and no warning", a.MetricsPort, b.MetricsPort, a.NoEffect)
	}
	for yaml, want := range map[string]string{
		"version: 1\napps:\n- {appDirPath: a, metricsPort: 70000, command: [x]}\n":                                                     "metricsPort 70000 is not a valid port",
		"version: 1\napps:\n- {appDirPath: a, metricsPort: 9191, command: [x]}\n- {appDirPath: b, daprHTTPPort: 9191, command: [x]}\n": "port 9191 is given twice",
	} {
		if _, err := parse(t, root, yaml); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", yaml, err, want)
		}
	}
}
