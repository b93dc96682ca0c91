package trip

import (
	"strings"
	"testing"
)

func TestCompile(t *testing.T) {
	for _, c := range []struct {
		name, src, wantErr string
	}{
		{"default", Default, ""},
		{"every counter", "requests > 10 && totalFailures * 2 > totalSuccesses || consecutiveSuccesses == 0 && consecutiveFailures >= 3", ""},
		{"misspelt counter", "consecutiveFailure > 5", "undeclared reference to 'consecutiveFailure'"},
		{"not a boolean", "consecutiveFailures + 1", "not bool"},
		{"syntax", "consecutiveFailures >", "does not compile"},
		{"empty", "  ", "empty expression"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(c.src)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Compile(%q) = %v", c.src, err)
				}
				if e.String() != strings.TrimSpace(c.src) {
					t.Errorf("String() = %q", e.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Compile(%q) error = %v, want one containing %q", c.src, err, c.wantErr)
			}
		})
	}
}

func TestEval(t *testing.T) {
	e := MustCompile("consecutiveFailures > 2 || (requests >= 10 && totalFailures * 2 >= requests)")
	for _, c := range []struct {
		counts Counts
		want   bool
	}{
		{Counts{Requests: 3, TotalFailures: 2, ConsecutiveFailures: 2}, false},
		{Counts{Requests: 3, TotalFailures: 3, ConsecutiveFailures: 3}, true},
		{Counts{Requests: 10, TotalFailures: 5, TotalSuccesses: 5, ConsecutiveFailures: 1}, true},
		{Counts{Requests: 10, TotalFailures: 4, TotalSuccesses: 6, ConsecutiveSuccesses: 1}, false},
	} {
		got, err := e.Eval(c.counts)
		if err != nil || got != c.want {
			t.Errorf("Eval(%+v) = %v, %v; want %v", c.counts, got, err, c.want)
		}
	}
	// A runtime error does not trip the breaker.
	div := MustCompile("totalFailures / totalSuccesses > 1")
	if got, err := div.Eval(Counts{TotalFailures: 3}); got || err == nil {
		t.Errorf("division by zero: Eval = %v, %v; want false and an error", got, err)
	}
}
