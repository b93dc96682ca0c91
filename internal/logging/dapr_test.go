package logging_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"testing/slogtest"

	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/version"
)

// jsonLines parses every line of buf, failing on one that is not a JSON
// object or that repeats a key.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %q is not a JSON object", line)
		}
		seen := map[string]bool{}
		for dec.More() {
			k, _ := dec.Token()
			key := k.(string)
			if seen[key] {
				t.Errorf("key %q appears twice in %s", key, line)
			}
			seen[key] = true
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestDaprFields: every JSON line carries Dapr's fields once — time,
// level, msg, scope, type "log", instance (the host name), ver and, once
// the runtime adds it, app_id — and narrower values replace wider ones
// instead of repeating the key.
func TestDaprFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Level: "debug", JSON: true, Scope: "mecha.runtime", Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	rt := l.With("app_id", "orders")
	rt.Info("ready")
	rt.With("scope", "mecha.runtime.pubsub").Warn("narrower scope")
	rt.Info("HTTP API called", "type", logging.TypeRequest, "method", "GET")
	// Other meanings of a Dapr key are kept under attr.<key>.
	rt.With("type", "DECLARATIVE").Info("subscription", "app_id", "target-app")
	rt.WithGroup("g").Info("grouped", "k", "v")

	lines := jsonLines(t, &buf)
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), buf.String())
	}
	for i, m := range lines {
		for k, want := range map[string]any{"app_id": "orders", "instance": host, "ver": version.Version} {
			if m[k] != want {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, m[k], want, m)
			}
		}
		if _, ok := m["time"].(string); !ok {
			t.Errorf("line %d has no time: %v", i, m)
		}
	}
	check := func(i int, k string, want any) {
		t.Helper()
		if lines[i][k] != want {
			t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], want, lines[i])
		}
	}
	check(0, "type", "log")
	check(0, "scope", "mecha.runtime")
	check(0, "level", "info")
	check(1, "scope", "mecha.runtime.pubsub")
	check(1, "level", "warning")
	check(2, "type", "request")
	check(2, "method", "GET")
	check(3, "type", "log")
	check(3, "attr.type", "DECLARATIVE")
	check(3, "attr.app_id", "target-app")
	check(4, "type", "log")
	check(4, "scope", "mecha.runtime")
	if g, _ := lines[4]["g"].(map[string]any); g["k"] != "v" {
		t.Errorf("grouped attribute = %v, want g.k=v", lines[4])
	}
}

// TestHandlerConformance runs the standard library's slog handler tests on
// the JSON logger.
func TestHandlerConformance(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Level: "debug", JSON: true, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	err = slogtest.TestHandler(l.Handler(), func() []map[string]any {
		var out []map[string]any
		for line := range strings.Lines(buf.String()) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTextDaprFields: the text format carries the same fields.
func TestTextDaprFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Output: &buf, Scope: "mecha.runtime"})
	if err != nil {
		t.Fatal(err)
	}
	l.With(slog.String("app_id", "a1")).Warn("careful")
	line := buf.String()
	for _, want := range []string{"level=warning", "msg=careful", "app_id=a1", "scope=mecha.runtime", "type=log", "ver=" + version.Version} {
		if !strings.Contains(line, want) {
			t.Errorf("text line %q lacks %q", line, want)
		}
	}
}
