package props

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
)

func md(kv ...string) components.Metadata {
	p := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	return components.Metadata{Properties: p}
}

func TestReader(t *testing.T) {
	r := New(md("MAXRETRIES", " ", "redisMaxRetries", "4", "flag", "yes", "wait", "250", "other", "1m", "s", " x "), time.Millisecond)
	if got := r.Int(3, "maxRetries", "redisMaxRetries"); got != 4 {
		t.Errorf("Int with a blank first alias = %d, want 4 (the second alias)", got)
	}
	if got := r.Int(3, "missing"); got != 3 {
		t.Errorf("Int(missing) = %d, want the default 3", got)
	}
	if !r.Bool("flag") || r.Bool("missing") {
		t.Error("Bool: want flag true, missing false")
	}
	if got := r.Duration(time.Second, "wait"); got != 250*time.Millisecond {
		t.Errorf("Duration(bare number) = %v, want 250ms", got)
	}
	if got := r.Duration(time.Second, "nope", "other"); got != time.Minute {
		t.Errorf("Duration(alias) = %v, want 1m", got)
	}
	if got := r.String("s"); got != " x " {
		t.Errorf("String = %q, want the value as written", got)
	}
	if got := r.Name("maxRetries", "redisMaxRetries"); got != "redisMaxRetries" {
		t.Errorf("Name = %q, want redisMaxRetries", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err = %v, want nil", err)
	}
}

func TestReaderErrors(t *testing.T) {
	r := New(md("n", "one", "b", "maybe", "d", "soon"), time.Second)
	if got := r.Int(7, "n"); got != 7 {
		t.Errorf("Int(invalid) = %d, want the default", got)
	}
	r.Bool("b")
	if got := r.Duration(time.Hour, "d"); got != time.Hour {
		t.Errorf("Duration(invalid) = %v, want the default", got)
	}
	r.Fail("x", "is wrong")
	err := r.Err()
	if err == nil {
		t.Fatal("Err = nil, want every problem")
	}
	for _, want := range []string{`"n"`, `"b"`, `"d"`, `metadata "x": is wrong`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Err = %q, want it to mention %s", err, want)
		}
	}
}

func TestUnknown(t *testing.T) {
	got := Unknown(md("redisHost", "h", "zzz", "1", "REDISDB", "0", "aaa", "2"), "redishost", "redisDB")
	want := []string{`ignoring unknown metadata property "aaa"`, `ignoring unknown metadata property "zzz"`}
	if !slices.Equal(got, want) {
		t.Errorf("Unknown = %q, want %q", got, want)
	}
}
