package logging_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/logging"
	"github.com/mecha-dev/mecha/internal/version"
)

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Level: "debug", JSON: true, Scope: "mecha.runtime", Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("d")
	l.Info("component loaded", "component", "statestore")
	l.Warn("w")
	l.Error("e", "error", "boom")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	wantLevels := []string{"debug", "info", "warning", "error"} // Dapr (logrus) writes "warning"
	wantMsgs := []string{"d", "component loaded", "w", "e"}
	if len(lines) != len(wantLevels) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(wantLevels), buf.String())
	}
	for i, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d %q is not JSON: %v", i, line, err)
		}
		ts, _ := m["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %d time = %q, want RFC 3339: %v", i, ts, err)
		}
		got := []any{m["level"], m["msg"], m["scope"], m["ver"]}
		want := []any{wantLevels[i], wantMsgs[i], "mecha.runtime", version.Version}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("line %d: level, msg, scope, ver = %v, want %v (%s)", i, got, want, line)
		}
	}
	var info map[string]any
	_ = json.Unmarshal([]byte(lines[1]), &info)
	if info["component"] != "statestore" {
		t.Errorf("attribute component = %v, want statestore", info["component"])
	}
}

func TestTextFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Output: &buf, Scope: "s"})
	if err != nil {
		t.Fatal(err)
	}
	l.Warn("careful", "k", "v")
	line := buf.String()
	for _, want := range []string{"level=warn", `msg=careful`, "scope=s", "ver=" + version.Version, "k=v"} {
		if !strings.Contains(line, want) {
			t.Errorf("text line %q lacks %q", line, want)
		}
	}
	if strings.HasPrefix(line, "{") {
		t.Errorf("text format wrote JSON: %q", line)
	}
}

func TestNoScope(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{JSON: true, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("x")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if _, has := m["scope"]; has {
		t.Errorf("line %s has a scope, want none", buf.Bytes())
	}
	if m["ver"] != version.Version {
		t.Errorf("ver = %v, want %s", m["ver"], version.Version)
	}
}

func TestLevels(t *testing.T) {
	cases := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{in: "", want: slog.LevelInfo},
		{in: "info", want: slog.LevelInfo},
		{in: "INFO", want: slog.LevelInfo},
		{in: "debug", want: slog.LevelDebug},
		{in: "warn", want: slog.LevelWarn},
		{in: "warning", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: "fatal", want: slog.LevelError},
		{in: "verbose", wantErr: true},
		{in: "trace", wantErr: true},
		{in: " info", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := logging.ParseLevel(c.in)
			if c.wantErr {
				if err == nil || !strings.Contains(err.Error(), `--log-level "`+c.in+`"`) {
					t.Fatalf("ParseLevel(%q) = %v, %v; want an error naming the flag and value", c.in, got, err)
				}
				if _, err := logging.New(logging.Options{Level: c.in, Output: &bytes.Buffer{}}); err == nil {
					t.Fatalf("New accepted level %q", c.in)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseLevel(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
		})
	}
}

func TestLevelFilters(t *testing.T) {
	var buf bytes.Buffer
	l, err := logging.New(logging.Options{Level: "warn", JSON: true, Output: &buf})
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("no")
	l.Info("no")
	l.Warn("yes")
	l.Error("yes")
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("at level warn got %d lines, want 2:\n%s", n, buf.String())
	}
	if strings.Contains(buf.String(), `"msg":"no"`) {
		t.Fatalf("filtered levels were written:\n%s", buf.String())
	}
}
