package placement

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hcLog hands raft's log lines (hclog) to slog, one level lower than raft
// chooses: raft logs every election and heartbeat failure at INFO/WARN,
// which is routine for a placement cluster, and the placement logs what
// matters (leadership, rounds) itself. Raft's errors stay errors.
type hcLog struct {
	l    *slog.Logger
	name string
	args []any
}

func newHCLog(l *slog.Logger) hclog.Logger { return &hcLog{l: l} }

func (h *hcLog) level(lv hclog.Level) slog.Level {
	switch lv {
	case hclog.Error:
		return slog.LevelError
	case hclog.Warn:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

func (h *hcLog) Log(lv hclog.Level, msg string, args ...any) {
	sl := h.level(lv)
	if !h.l.Enabled(context.Background(), sl) {
		return
	}
	all := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		all = append(all, "raft_logger", h.name)
	}
	all = append(all, h.args...)
	all = append(all, args...)
	h.l.Log(context.Background(), sl, msg, all...)
}

func (h *hcLog) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLog) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLog) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLog) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLog) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLog) enabled(lv hclog.Level) bool {
	return h.l.Enabled(context.Background(), h.level(lv))
}

func (h *hcLog) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcLog) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcLog) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcLog) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcLog) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcLog) ImpliedArgs() []any { return h.args }

func (h *hcLog) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

func (h *hcLog) Name() string { return h.name }

func (h *hcLog) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hcLog) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel is ignored: the slog handler decides.
func (h *hcLog) SetLevel(hclog.Level) {}

func (h *hcLog) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsInfo():
		return hclog.Info
	}
	return hclog.Error
}

func (h *hcLog) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelDebug)
}

func (h *hcLog) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(nil).Writer()
}
