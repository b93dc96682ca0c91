package version

import (
	"os"
	"regexp"
	"testing"
)

// TestDaprModulePinned guards the go.mod pin: the module proxy here is a
// filtered mirror whose "latest" dapr is v1.14.0, and a careless `go get`
// silently downgrades to it.
func TestDaprModulePinned(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/dapr/dapr (\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require github.com/dapr/dapr")
	}
	if got := string(m[1]); got != "v"+DaprAPI {
		t.Fatalf("go.mod requires github.com/dapr/dapr %s, want v%s", got, DaprAPI)
	}
}
