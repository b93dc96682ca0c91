package cron_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	"github.com/mecha-dev/mecha/components/bindings/cron"
)

func newCron(t *testing.T, schedule string) *cron.Binding {
	t.Helper()
	b := cron.New(components.Deps{Logger: nil})
	if err := b.Init(context.Background(), components.Metadata{Name: "tick", Type: "bindings.cron", Properties: map[string]string{"schedule": schedule}}); err != nil {
		t.Fatalf("Init(%q): %v", schedule, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	bindingstest.RunInput(t, func(t *testing.T) bindings.Input { return newCron(t, "@every 1s") }, bindingstest.InputOptions{})
}

func TestInit(t *testing.T) {
	tests := []struct {
		name     string
		schedule string
		wantErr  []string // substrings; none: must succeed
	}{
		{name: "every", schedule: "@every 15s"},
		{name: "descriptor", schedule: "@daily"},
		{name: "six fields with seconds", schedule: "*/5 * * * * *"},
		{name: "five fields", schedule: "0 */15 * * *"},
		{name: "time zone", schedule: "CRON_TZ=America/New_York 0 30 04 * * *"},
		{name: "missing", schedule: "", wantErr: []string{`"schedule"`, "required"}},
		{name: "garbage", schedule: "every now and then", wantErr: []string{`"schedule"`, "every now and then"}},
		{name: "bad every", schedule: "@every soon", wantErr: []string{`"schedule"`}},
		{name: "out of range", schedule: "0 61 * * * *", wantErr: []string{`"schedule"`}},
		{name: "unknown zone", schedule: "CRON_TZ=Mars/Olympus 0 * * * *", wantErr: []string{`"schedule"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := cron.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: map[string]string{"Schedule": tt.schedule}})
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Init succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Init error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestEventMetadata(t *testing.T) {
	b := newCron(t, "@every 1s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *bindings.Event, 1)
	start := time.Now()
	err := b.Read(ctx, func(_ context.Context, e *bindings.Event) ([]byte, error) {
		got <- e
		cancel()
		return nil, nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	e := <-got
	if e.Data != nil {
		t.Errorf("event data = %q, want none", e.Data)
	}
	if e.Metadata["timeZone"] == "" {
		t.Errorf("metadata timeZone missing: %v", e.Metadata)
	}
	ts, perr := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", e.Metadata["readTimeUTC"])
	if perr != nil || ts.Before(start.Add(-time.Second)) {
		t.Errorf("metadata readTimeUTC = %q (%v), want a UTC time after the start", e.Metadata["readTimeUTC"], perr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("first event of @every 1s after %v", d)
	}
}

func TestReadUninitialised(t *testing.T) {
	b := cron.New(components.Deps{})
	if err := b.Read(context.Background(), func(context.Context, *bindings.Event) ([]byte, error) { return nil, nil }); err == nil {
		t.Fatal("Read before Init succeeded")
	}
}
