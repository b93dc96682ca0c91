package kubernetes_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestClientGoStaysHere guards the promise in the package documentation:
// client-go roughly doubles the binary and its idle memory, so no other
// package of the module may import k8s.io directly, and a default (no k8s tag) build of
// the binary must not link it at all.
func TestClientGoStaysHere(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	const self = "github.com/mecha-dev/mecha/components/secretstores/kubernetes"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "github.com/mecha-dev/mecha/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		if pkg == self {
			continue
		}
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, "k8s.io/") {
				t.Errorf("%s imports %s; only %s may import k8s.io", pkg, imp, self)
			}
		}
	}
	// The default build leaves client-go out (it costs ~50 MB of binary and
	// ~17 MB of idle RSS); `-tags k8s` puts it in.
	out, err = exec.CommandContext(ctx, "go", "list", "-deps", "github.com/mecha-dev/mecha/cmd/mecha").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || dep == self {
			t.Fatalf("cmd/mecha built without -tags k8s links %s", dep)
		}
	}
}
