package sidecar_test

import (
	"context"
	"log/slog"
	"reflect"
	"testing"

	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// TestFlagsMetrics: daprd's metrics flags are real now: they fill
// Options.Metrics and log no "no effect" warning.
func TestFlagsMetrics(t *testing.T) {
	cases := []struct {
		args []string
		want runtime.MetricsOptions
	}{
		{nil, runtime.MetricsOptions{Enabled: true, Port: 9090}},
		{[]string{"--enable-metrics=false"}, runtime.MetricsOptions{Port: 9090}},
		{[]string{"--metrics-port", "0"}, runtime.MetricsOptions{Enabled: true}},
		{[]string{"--metrics-port", "9191", "--metrics-listen-address", "0.0.0.0"}, runtime.MetricsOptions{Enabled: true, Port: 9191, ListenAddresses: []string{"0.0.0.0"}}},
		{[]string{"--metrics-listen-address", "127.0.0.1, [::1]"}, runtime.MetricsOptions{Enabled: true, Port: 9090, ListenAddresses: []string{"127.0.0.1", "::1"}}},
	}
	for _, c := range cases {
		f, err := parse(t, append([]string{"--app-id", "a"}, c.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var warned bool
		o, err := f.Options(slog.New(warnSpy{&warned}), kinds.New())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o.Metrics, c.want) {
			t.Errorf("%v: Metrics = %+v, want %+v", c.args, o.Metrics, c.want)
		}
		if warned {
			t.Errorf("%v: a metrics flag was warned about", c.args)
		}
	}
}

// warnSpy is a handler that notes any warning.
type warnSpy struct{ warned *bool }

func (w warnSpy) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w warnSpy) Handle(context.Context, slog.Record) error    { *w.warned = true; return nil }
func (w warnSpy) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w warnSpy) WithGroup(string) slog.Handler                { return w }
