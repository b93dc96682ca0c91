// Package bindingstest is the conformance suite every binding runs from its
// own tests:
//
//	func TestConformance(t *testing.T) {
//		bindingstest.RunOutput(t, newOutput, bindingstest.OutputOptions{...})
//		bindingstest.RunInput(t, newInput, bindingstest.InputOptions{...})
//	}
//
// Output bindings declare their operations and a sequence of invocations
// with the answers they must give (each binding's semantics differ too much
// for generic round trips); the suite adds what every output binding owes:
// a declared operation list, an error (not a panic) for an unknown
// operation, and an idempotent Close. Input bindings are checked for event
// delivery, behaviour after a handler error (redelivery where the binding
// promises it, otherwise continued delivery) and that cancelling Read's
// context or closing the binding stops Read.
package bindingstest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components/bindings"
)

// ServiceEnv returns the environment variable name (a service address such
// as REDIS_ADDR), skipping the test when it is unset, or failing it when
// MECHA_REQUIRE_SERVICES=1 as in CI. (Components cannot import the
// sidecar's internal test harness, so this is a copy of its helper.)
func ServiceEnv(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("MECHA_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is not set but MECHA_REQUIRE_SERVICES=1 (source /tmp/dapr-services/services.env)", name)
		}
		t.Skipf("%s is not set; start services with ../shared/services/start-services.sh", name)
	}
	return v
}

// OutputCase is one invocation of an output binding and what it must give.
type OutputCase struct {
	Name    string
	Request bindings.InvokeRequest
	// WantErr, when set, is a substring the error must contain; otherwise
	// the invocation must succeed.
	WantErr string
	// NoContent requires a nil response.
	NoContent bool
	// WantData, when non-nil, is the exact response data.
	WantData []byte
	// WantMetadata lists response metadata entries that must be present.
	WantMetadata map[string]string
	// Check, when set, runs further checks on the response.
	Check func(t *testing.T, resp *bindings.InvokeResponse)
}

// OutputOptions describe an output binding to the suite.
type OutputOptions struct {
	// Operations is the exact set Operations() must return.
	Operations []bindings.Operation
	// Cases run in order, on one instance, so later cases may read what
	// earlier ones wrote.
	Cases []OutputCase
}

// NewOutputFunc returns an initialised output binding; it should register
// its own cleanup (t.Cleanup) to close it.
type NewOutputFunc func(t *testing.T) bindings.Output

// RunOutput runs the output suite.
func RunOutput(t *testing.T, newOutput NewOutputFunc, opts OutputOptions) {
	t.Helper()
	t.Run("operations", func(t *testing.T) {
		got := newOutput(t).Operations()
		if len(got) == 0 {
			t.Fatal("Operations() is empty")
		}
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if c := slices.Compact(slices.Clone(sorted)); len(c) != len(sorted) {
			t.Errorf("Operations() = %v has duplicates", got)
		}
		want := slices.Clone(opts.Operations)
		slices.Sort(want)
		if !slices.Equal(sorted, want) {
			t.Errorf("Operations() = %v, want %v", sorted, want)
		}
	})
	t.Run("invocations", func(t *testing.T) {
		o := newOutput(t)
		for _, c := range opts.Cases {
			if !t.Run(c.Name, func(t *testing.T) { runCase(t, o, c) }) {
				t.Fatalf("case %q failed; later cases depend on it", c.Name)
			}
		}
	})
	t.Run("unknown operation", func(t *testing.T) {
		o := newOutput(t)
		resp, err := invoke(t, o, &bindings.InvokeRequest{Operation: "mecha-no-such-operation", Metadata: map[string]string{}})
		if err == nil {
			t.Fatalf("Invoke(unknown operation) = %+v, nil; want an error", resp)
		}
	})
	t.Run("close", func(t *testing.T) {
		o := newOutput(t)
		for i := range 2 {
			if err := o.Close(); err != nil {
				t.Fatalf("Close #%d: %v", i+1, err)
			}
		}
		// After Close an invocation may fail, but must not panic or hang.
		req := opts.Cases
		if len(req) > 0 {
			r := req[0].Request
			r.Metadata = maps.Clone(r.Metadata)
			_, _ = invoke(t, o, &r)
		}
	})
}

// invoke calls o.Invoke with a deadline, turning a panic into a failure.
func invoke(t *testing.T, o bindings.Output, req *bindings.InvokeRequest) (resp *bindings.InvokeResponse, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Invoke(%s) panicked: %v", req.Operation, p)
		}
	}()
	return o.Invoke(ctx, req)
}

func runCase(t *testing.T, o bindings.Output, c OutputCase) {
	req := c.Request
	req.Metadata = maps.Clone(req.Metadata)
	resp, err := invoke(t, o, &req)
	if c.WantErr != "" {
		if err == nil {
			t.Fatalf("Invoke = %s, nil; want an error containing %q", describe(resp), c.WantErr)
		}
		if !strings.Contains(err.Error(), c.WantErr) {
			t.Fatalf("Invoke error = %q, want it to contain %q", err, c.WantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if c.NoContent && resp != nil {
		t.Fatalf("Invoke = %s, want a nil response (no content)", describe(resp))
	}
	if c.WantData != nil {
		if resp == nil || !bytes.Equal(resp.Data, c.WantData) {
			t.Fatalf("Invoke = %s, want data %q", describe(resp), c.WantData)
		}
	}
	for k, v := range c.WantMetadata {
		if resp == nil || resp.Metadata[k] != v {
			t.Errorf("response metadata %q = %q, want %q (response %s)", k, metadataValue(resp, k), v, describe(resp))
		}
	}
	if c.Check != nil {
		c.Check(t, resp)
	}
}

func metadataValue(r *bindings.InvokeResponse, k string) string {
	if r == nil {
		return ""
	}
	return r.Metadata[k]
}

func describe(r *bindings.InvokeResponse) string {
	if r == nil {
		return "<nil response>"
	}
	return fmt.Sprintf("{data %q metadata %v}", trunc(r.Data), r.Metadata)
}

func trunc(b []byte) []byte {
	if len(b) > 200 {
		return append(slices.Clip(b[:200]), "..."...)
	}
	return b
}
