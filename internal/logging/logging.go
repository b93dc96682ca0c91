// Package logging builds the process logger from --log-level and
// --log-as-json, with the fields Dapr's JSON logs carry (time, level, msg,
// scope, ver) so existing log pipelines keep working.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/mecha-dev/mecha/internal/version"
)

// Options select the log format.
type Options struct {
	Level  string // debug, info, warn, error (default info)
	JSON   bool
	Scope  string // e.g. "mecha.runtime"
	Output io.Writer
}

// ParseLevel maps Dapr's level names to slog levels.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error", "fatal":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q is not one of debug, info, warn, error", s)
}

// New returns the logger described by o.
func New(o Options) (*slog.Logger, error) {
	lvl, err := ParseLevel(o.Level)
	if err != nil {
		return nil, err
	}
	ho := &slog.HandlerOptions{
		Level: lvl,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.LevelKey {
				return slog.String(slog.LevelKey, strings.ToLower(a.Value.String()))
			}
			return a
		},
	}
	var h slog.Handler
	if o.JSON {
		h = slog.NewJSONHandler(o.Output, ho)
	} else {
		h = slog.NewTextHandler(o.Output, ho)
	}
	l := slog.New(h)
	if o.Scope != "" {
		l = l.With(slog.String("scope", o.Scope))
	}
	return l.With(slog.String("ver", version.Version)), nil
}
